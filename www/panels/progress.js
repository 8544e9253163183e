// The training panel: Train and Pause, the progress readouts, the loss chart, what the page is
// doing meanwhile, and the training loop, which makes training follow the user's wish and
// redraws the views as it goes; the first Train on a GPU device chooses the faster device.
import { $, act, fail, training } from "../page.js";
import { GROUP_COLOURS, LossChart } from "../views.js";
import { persist, showDevice, showStatus } from "./device.js";
import { refreshAll, refreshLight, resetModel, showModel } from "../model.js";
import { refreshSamples } from "./samples.js";
import { updateDrawing } from "./interpolation.js";

export const chart = new LossChart($("chart"), $("chart-tip"));

// What the page is doing that the user waits for, under the model's summary ("": nothing).
export function showWork(text) {
  $("work-note").textContent = text;
  $("work-note").hidden = !text;
}

// Says `text` while `promise` is pending, if that lasts long enough to notice; resolves as it does.
export async function saying(text, promise) {
  const timer = setTimeout(() => showWork(text), 300);
  try {
    return await promise;
  } finally {
    clearTimeout(timer);
    if ($("work-note").textContent === text) showWork("");
  }
}

// Before the first model exists: what is happening, and that a Train pressed now is not lost.
export function showPreparing() {
  if (training.trainer) return;
  $("model-summary").textContent = training.wanted
    ? "Preparing the model; training starts as soon as it is ready."
    : "Preparing the model…";
}

// The user's wish, said at once: what they asked for after this starts paused.
export function pauseWish() {
  training.wanted = false;
  updateControls();
}

// The first Train on a GPU device: a few steps timed on it and on the CPU (Training.pickFaster),
// training goes on on the faster, and the device line says what was measured. The steps timed
// on the device kept are the model's next steps, and the chart shows them.
async function chooseDevice() {
  if (!training.shouldChoose()) return;
  showStatus("loading", "Timing a few training steps on the GPU and on the CPU, to train on the faster…");
  const points = { train: chart.train, test: chart.test };
  const before = training.trainer;
  try {
    const { metrics, firstStep } = await training.pickFaster();
    if (training.trainer !== before) {
      showModel();
      restoreChart(points);
    }
    let step = firstStep;
    for (const { m, steps } of metrics) {
      step += steps;
      chart.addTrain({ epoch: step / training.trainer.stepsPerEpoch(), ...chartPoint(m) });
    }
    showProgress(metrics.at(-1).m);
  } finally {
    showDevice();
  }
}

// Moves the model between the GPU and the CPU (Training.switchDevice); the chart keeps its
// history, and training goes on there if it was wanted.
export async function switchDevice() {
  if (!training.trainer || !training.gpu) return;
  training.stop(); // no steps after the checkpoint: they would be lost with the old trainer
  const points = { train: chart.train, test: chart.test };
  await training.switchDevice();
  showModel();
  restoreChart(points);
  showDevice();
}

// The chart's points, kept across a reload or a change of device, and the last of them in the
// readouts.
export function restoreChart({ train, test }) {
  chart.train = train;
  chart.test = test;
  chart.draw();
  showProgress(train.at(-1));
  if (test.length) $("test-nelbo").textContent = test.at(-1).nelbo.toFixed(1);
}

// Kept for a restart after a lost device and for the next visit (Training.takeSnapshot).
export async function takeSnapshot() {
  await training.takeSnapshot();
  persist(); // not awaited: the views need not wait for the disk (writes are kept in order)
}

// Makes training follow the user's wish (`training.wanted`), once no change of the model is
// pending: a Train pressed while the page starts, or while a model is being replaced, starts
// training on the model that is there when it is done.
export function settle() {
  updateControls();
  if (training.changing()) return;
  if (training.wanted && training.shouldChoose()) {
    act(chooseDevice); // settles again when it is done
  } else if (training.wanted && !training.running) {
    const run = training.start();
    if (run !== null) trainLoop(run).catch(fail);
  } else if (!training.wanted && training.running) {
    training.stop();
    // Pausing is a good moment to keep the weights and show the latest views.
    takeSnapshot().then(refreshAll).catch(fail);
  }
  updateControls();
}
training.settled = settle;

const nextTask = () => new Promise((resolve) => setTimeout(resolve, 0));
const visible = () => new Promise((resolve) =>
  document.addEventListener("visibilitychange", resolve, { once: true }));

// The `run`th training loop: submissions of steps, and the views now and then, until it is
// paused or its model replaced.
async function trainLoop(run) {
  const batch = training.trainer.config().batch_size;
  let lastSamples = 0, lastViews = 0;
  while (training.runs(run)) {
    if (document.hidden) {
      await visible();
      continue;
    }
    // Steps trained are shown, also those that were in flight when Pause was pressed (a task
    // for a model replaced meanwhile rejects instead).
    const { m, steps, ms } = await training.trainSteps();
    const epoch = training.totalEpochs();
    chart.addTrain({ epoch, ...chartPoint(m) });
    showProgress(m, (steps * batch) / (ms / 1000));
    const now = performance.now();
    if (training.reachedNewEpoch()) {
      const e = await training.task((t) => t.evaluate());
      chart.addTest({ epoch, nelbo: e.nelbo });
      $("test-nelbo").textContent = e.nelbo.toFixed(1);
      await takeSnapshot();
      await refreshAll();
      lastSamples = lastViews = now;
    } else if (now - lastViews > 4000) {
      await refreshLight();
      lastSamples = lastViews = now;
    } else if (now - lastSamples > 1000) {
      await refreshSamples();
      lastSamples = now;
    }
    await nextTask();
  }
}

// A training submission's metrics as the chart keeps them (a hierarchy's KL per group too).
const chartPoint = (m) => ({ loss: m.loss, reconstruction: m.reconstruction, kl: m.kl, ...(m.klGroups ? { klGroups: [...m.klGroups] } : {}) });

export function showProgress(m, rate) {
  const t = training.trainer;
  if (!t) return;
  $("epoch").textContent = training.totalEpochs().toFixed(2);
  $("step").textContent = String(training.totalSteps());
  const s = Math.floor(training.trainedMs / 1000);
  $("elapsed").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  const kl = (m) => m.klGroups && chart.groups.length
    ? chart.groups.map((g, i) => `KL ${g} ${m.klGroups[i].toFixed(1)}`).join(" + ")
    : `KL ${m.kl.toFixed(1)}`;
  if (m) $("loss").textContent = `${m.loss.toFixed(1)} (rec. ${m.reconstruction.toFixed(1)} + ${kl(m)})`;
  else $("loss").textContent = $("test-nelbo").textContent = "–";
  const n = training.stepsPerSubmit;
  $("rate").textContent = rate ? `${Math.round(rate)} (${n} ${n === 1 ? "step" : "steps"}/submit)` : "–";
}

export function updateControls() {
  const ready = !!training.trainer;
  const train = $("train");
  // Train can be pressed at any time, also before there is a model: it says what was asked.
  train.textContent = training.wanted ? "Pause" : "Train";
  train.disabled = !!training.broken;
  showPreparing();
  // A diverged model keeps its last good weights: they can still be saved and explored.
  for (const id of ["reset", "save", "switch-device", "new-samples", "new-variations", "more-digits", "apply", "data-files", "bundled", "load"]) {
    $(id).disabled = !ready || training.broken === "lost";
  }
  updateDrawing();
}

// What the chart's figures are, for a model with categorical latents (`classes` > 0), Gaussian
// ones, or a hierarchy (`groups`, top first: each group's KL is a dashed line of its own).
export function describeChart(classes, groups) {
  chart.groups = groups.map((g) => g.split(" ")[0]);
  $("chart-caption").textContent = classes
    ? "Training loss (relaxed: decoding Gumbel-softmax samples at the current τ) split into reconstruction " +
      "and KL; dots: the test set's discrete −ELBO (decoding one-hot samples) each epoch."
    : groups.length
      ? "Training loss (its KL weighted during the warm-up) split into reconstruction and KL, the KL also per group " +
        "(dashed); dots: test-set −ELBO each epoch."
      : "Training loss split into reconstruction and KL; dots: test-set −ELBO each epoch.";
  $("legend-groups").hidden = groups.length === 0;
  $("legend-groups").replaceChildren(...groups.map((g, i) => {
    const item = document.createElement("span");
    item.innerHTML = `<span class="swatch dashed" style="--c:${GROUP_COLOURS[i % GROUP_COLOURS.length]}"></span>`;
    item.append(`KL ${g}`);
    return item;
  }));
  chart.labels = classes ? { loss: "loss (relaxed)", test: "test −ELBO (discrete)" } : { loss: "loss", test: "test −ELBO" };
  $("legend-loss").textContent = chart.labels.loss;
  $("legend-test").textContent = chart.labels.test;
}

$("train").addEventListener("click", () => {
  training.wanted = !training.wanted;
  settle();
});
$("reset").addEventListener("click", resetModel);
$("switch-device").addEventListener("click", () => act(switchDevice));
// A hidden tab may be closed without warning: keep what was trained for the next visit.
document.addEventListener("visibilitychange", () => {
  if (document.hidden && training.unsaved && !training.broken) takeSnapshot().catch(() => {});
});
