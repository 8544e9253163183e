// The page: the panels, the controls and the training loop. The model and its training (where
// it trains, the data, the trainer, the bookkeeping) are owned by `training` (training.js); the
// panels read from it, and what they show of their own is in `view`. Every action's error takes
// one path, `fail`.
import { drawDigits, drawScatter, drawWaiting, DrawingPad, LABEL_COLOURS, LossChart, SIDE } from "./views.js";
import { Remote } from "./remote.js";
import { Training } from "./training.js";
import { createStore, get as idbGet } from "./vendor/idb-keyval.js";

const $ = (id) => document.getElementById(id);
const BUNDLED = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
  "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"];
const STRIP = 10; // digits in the interpolation strip
const TRAVERSAL_STEPS = 9;
const MAP_POINTS = 2000; // test codes in the scatter
const GALLERY = 16;

let wasm; // the page's wasm-bindgen module: the views' pure functions, the data they read
let remote; // the trainer's worker (remote.js): devices, data and trainers live there
const training = new Training();
// What the panels show beyond the model: their own choices and what they computed from it.
const view = {
  sampleSeed: 1,
  galleryStart: 0,
  slot: "a",
  picks: { a: null, b: null }, // { x: Float32Array(784), label }
  codes: null, // { a, b }: the picks' codes (mu, or class probabilities)
  usage: null, // average KL per latent dimension (or categorical variable), most used first: [{ dim, kl }]
  latent: { variables: 0, classes: 0 }, // the model's latent space; classes 0 = Gaussian
};
const chart = new LossChart($("chart"), $("chart-tip"));
const pad = new DrawingPad($("pad"), () => { $("use-drawing").disabled = !training.trainer || pad.empty; });

// ---- The device and failures ----

// What each way of failing to get a GPU means, in plain words, and what the user can do.
const GPU_HELP = {
  "no-webgpu": {
    summary: "This browser does not support WebGPU.",
    advice: "Open the page in a browser with WebGPU: Chrome or Edge 113 or later, Safari 26 or later, " +
      "or Firefox 141 or later on Windows. On Linux, Chrome needs WebGPU switched on at " +
      "chrome://flags/#enable-unsafe-webgpu.",
  },
  "no-adapter": {
    summary: "This browser supports WebGPU but did not offer a GPU adapter.",
    advice: "Check that hardware acceleration is on in the browser's settings (Chrome: Settings, System, " +
      "“Use graphics acceleration when available”), update the graphics driver, or try another browser. " +
      "On Linux, Chrome may also need chrome://flags/#enable-unsafe-webgpu and #enable-vulkan.",
  },
  shape: {
    summary: "The page's address asks for GPU kernels it does not have.",
    advice: "Use ?kernels=software or ?kernels=hardware in the address, or leave it out to let the GPU choose.",
  },
  device: {
    summary: "A GPU adapter was found, but it refused to open a device for this page.",
    advice: "Close other tabs or programs that use the GPU heavily and reload the page; if it keeps " +
      "failing, restart the browser.",
  },
};

// The device status box: a state ("loading", "ready", "cpu", "error"), a plain sentence, and optionally
// advice and the technical report (folded away: wgpu's adapter report means little to most).
function showStatus(stateName, text, { advice = "", report = "" } = {}) {
  $("gpu-status").dataset.state = stateName;
  $("gpu-message").textContent = text;
  $("gpu-advice").textContent = advice;
  $("gpu-advice").hidden = !advice;
  $("gpu-report").textContent = report;
  $("gpu-details").hidden = !report;
}

// Which device trains, and why: the GPU's adapter; or the CPU, because the user chose it or
// because there is no GPU (the plain reason and advice, with the error's own report folded away).
function showDevice() {
  const onGpu = training.device.kind() === "gpu";
  const note = training.choiceNote ? ` ${training.choiceNote}` : "";
  if (onGpu) {
    showStatus("ready", training.device.describe() + note);
  } else if (training.gpu && note) {
    showStatus("cpu", `Training on the CPU in WebAssembly, faster here than the GPU:${note}`);
  } else if (training.gpu && training.choice === "forced") {
    showStatus("cpu", "Training on the CPU in WebAssembly, as the page's address asks (?device=cpu).");
  } else if (training.gpu) {
    showStatus("cpu", "Training on the CPU in WebAssembly, slower than a GPU, because you chose it; " +
      "the samples/s readout shows the difference.");
  } else {
    const err = training.gpuError;
    const help = GPU_HELP[err && err.kind];
    showStatus("cpu", "Training on the CPU in WebAssembly, slower than a GPU. " +
      (help ? help.summary : "The GPU could not be started."), { advice: help ? help.advice : "", report: messageOf(err) });
  }
  $("switch-device").hidden = !training.gpu;
  $("switch-device").textContent = onGpu ? "Train on the CPU instead" : "Train on the GPU again";
}

function alertUser(text, action, onAction) {
  $("alert-message").textContent = text;
  const button = $("alert-action");
  button.hidden = !action;
  button.textContent = action || "";
  button.onclick = onAction || null;
  $("alert").hidden = false;
}

function clearAlert() {
  $("alert").hidden = true;
}

const messageOf = (err) => (err && err.message) || String(err);

// Wraps an action on the model (a view's refresh, Save) so that whatever it throws takes the
// one error path, `fail`, instead of being lost in a promise. Without a model yet, there is
// nothing to do: the views are drawn once it is made.
function failsSafely(action) {
  return async (...args) => {
    if (!training.trainer) return;
    try {
      await action(...args);
    } catch (err) {
      fail(err);
    }
  };
}

// Says what went wrong where the user will look; stops training when it cannot go on.
function fail(err) {
  const kind = err && err.kind;
  if (kind === "none") return;
  if (kind === "diverged") {
    training.stop("diverged");
    alertUser(`Training diverged: ${messageOf(err)}.`, "Reset the model", resetModel);
  } else if (kind === "lost") {
    training.stop("lost");
    const kept = training.snapshot ? `The weights from step ${training.snapshotStep} are kept in this page.`
      : "No weights were saved yet; a fresh model will start.";
    alertUser(`Training stopped: ${messageOf(err)}. ${kept}`, "Restart on a new device", () => act(restart));
    showStatus("error", "The GPU device was lost.");
  } else {
    console.warn(err);
    alertUser(`Something went wrong: ${messageOf(err)}`);
  }
  updateControls();
}

// ---- Startup ----

// Runs `fn` as a change of the model, its device or its data (Training.change): after every
// change asked for before it, its errors taking the one error path.
function act(fn) {
  return training.change(fn).catch(fail);
}

function start(bindings) {
  wasm = bindings;
  remote = new Remote(bindings);
  training.remote = remote;
  showPreparing();
  showWaiting("Preparing the model…");
  act(async () => {
    await training.openDevice();
    showDevice();
    if (training.device.kind() === "gpu") showWaiting("Preparing the GPU kernels…");
    if (await restoreSession()) return;
    try {
      await useBundled();
    } catch (err) {
      $("data-summary").textContent = `The bundled digits could not be loaded: ${messageOf(err)}`;
    }
  });
}

// The views' canvases before their first drawing: what they wait for, written across them.
function showWaiting(text) {
  for (const id of ["samples", "recon", "strip"]) {
    if ($(id).dataset.drawn === undefined) drawWaiting($(id), text);
  }
}

// What the page is doing that the user waits for, under the model's summary ("": nothing).
function showWork(text) {
  $("work-note").textContent = text;
  $("work-note").hidden = !text;
}

// Says `text` while `promise` is pending, if that lasts long enough to notice; resolves as it does.
async function saying(text, promise) {
  const timer = setTimeout(() => showWork(text), 300);
  try {
    return await promise;
  } finally {
    clearTimeout(timer);
    if ($("work-note").textContent === text) showWork("");
  }
}

// Before the first model exists: what is happening, and that a Train pressed now is not lost.
function showPreparing() {
  if (training.trainer) return;
  $("model-summary").textContent = training.wanted
    ? "Preparing the model; training starts as soon as it is ready."
    : "Preparing the model…";
}

async function fetchBundled() {
  return Promise.all(BUNDLED.map(async (name) => {
    const response = await fetch(`data/${name}`);
    if (!response.ok) throw new Error(`data/${name}: HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  }));
}

const BUNDLED_NAME = "the bundled MNIST digits";

async function useBundled() {
  const files = await fetchBundled();
  await setData(await remote.data(BUNDLED, files, training.device.maxBufferBytes()), BUNDLED_NAME, null);
}

// Replaces the dataset (made from `source`, see training.dataSource) and starts a fresh model on
// it; on any error both stay as they were.
async function setData(data, name, source) {
  const config = configFor(training.trainer ? training.trainer.config() : readSettings().config, data);
  let trainer;
  try {
    trainer = await remote.trainer(training.device, config, data);
  } catch (err) {
    data.free();
    throw err;
  }
  installData(data, name, source);
  replaceTrainer(trainer);
  forgetSession();
}

function installData(data, name, source) {
  training.useData(data, source);
  $("data-summary").textContent =
    `Training on ${name}: ${data.trainCount()} training and ${data.testCount()} test images of ${data.rows()}x${data.cols()} pixels.`;
  view.picks = { a: pickTest(0), b: pickTest(1) };
  view.galleryStart = 0;
  drawGallery();
}

// ---- The session in IndexedDB: training survives a reload ----
// Two records: the session (the latest snapshot: weights with Adam's state, the chart's
// history, the time trained, and whether the data is the bundled set or the user's own) written
// at every snapshot (each epoch, each pause, and when the tab is hidden); and the user's own
// files, written once when they change rather than with every snapshot. Read here once, on the
// next visit; written by the trainer's worker (Remote.store), off the page's thread.

const sessionStore = createStore("webvae", "session");
const SESSION_KEY = "current";
const DATA_KEY = "data";
const SESSION_VERSION = 1;
let storedData; // the dataSource the DATA_KEY record holds (undefined: not known to hold any)

function showSession(text, { startOver = false, error = false } = {}) {
  $("session-status").textContent = text;
  $("session-status").dataset.state = error ? "error" : "ok";
  $("session").hidden = !text;
  $("start-over").hidden = !startOver;
}

// Keeps the latest snapshot; a full quota (or no storage at all) is said, and training goes on.
// Never throws.
async function persist() {
  if (!training.snapshot || !training.trainer) return;
  const session = {
    version: SESSION_VERSION,
    checkpoint: training.snapshot,
    step: training.snapshotStep,
    savedAt: Date.now(),
    chart: { train: chart.train, test: chart.test },
    trainedMs: training.trainedMs,
    ownData: !!training.dataSource,
  };
  try {
    if (training.dataSource && storedData !== training.dataSource) {
      await remote.store(DATA_KEY, training.dataSource);
      storedData = training.dataSource;
    }
    await remote.store(SESSION_KEY, session);
  } catch (err) {
    const why = err && err.name === "QuotaExceededError" ? "this browser's storage for the page is full" : messageOf(err);
    showSession(`Progress could not be kept for the next visit (${why}); training goes on.`, { error: true });
  }
}

// The model the session held is gone from the page: so is the session (a message saying why an
// old one was discarded stays).
function forgetSession() {
  remote.forget(SESSION_KEY);
  remote.forget(DATA_KEY);
  storedData = undefined;
  if ($("session-status").dataset.state !== "error") showSession("");
}

// The last visit's session, if there is one and it still fits: data, model, Adam's state and
// chart, all made before anything is replaced. One that does not fit is said and discarded.
async function restoreSession() {
  let session;
  try {
    session = await idbGet(SESSION_KEY, sessionStore);
  } catch {
    return false; // no IndexedDB here (e.g. a private window): nothing to restore
  }
  if (!session) return false;
  let data = null;
  try {
    if (session.version !== SESSION_VERSION) throw new Error("it was saved by another version of this page");
    const own = session.ownData ? await idbGet(DATA_KEY, sessionStore) : null;
    if (session.ownData && !own) throw new Error("the files it was trained on were not kept");
    const [names, files] = own ? [own.names, own.files] : [BUNDLED, await fetchBundled()];
    data = await remote.data(names, files, training.device.maxBufferBytes());
    const trainer = await remote.fromCheckpoint(training.device, session.checkpoint, data);
    installData(data, own ? own.names.join(", ") : BUNDLED_NAME, own);
    storedData = own;
    replaceTrainer(trainer, { step: session.step, snapshot: session.checkpoint, trainedMs: session.trainedMs });
    restoreChart(session.chart);
    const saved = new Date(session.savedAt).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
    showSession(`Resumed from step ${session.step.toLocaleString("en")}, saved ${saved}.`, { startOver: true });
    return true;
  } catch (err) {
    if (data && training.data !== data) data.free();
    remote.forget(SESSION_KEY);
    remote.forget(DATA_KEY);
    showSession(`The training saved on your last visit could not be restored, and was discarded: ${messageOf(err)}`, { error: true });
    return false;
  }
}

// ---- The model ----

// A configuration for `data`'s image size: one given as an architecture takes the new size;
// one with layers of its own (from a checkpoint) keeps them, and the trainer says if they fit.
function configFor(config, data) {
  if (!config.architecture) return config;
  const { input, encoder, decoder, ...rest } = config;
  return { ...rest, image: [data.rows(), data.cols()] };
}

// A new model, in every panel; `from` says where in its history it starts (see Training.replace).
function replaceTrainer(trainer, from = {}) {
  training.replace(trainer, from);
  showModel();
}

// The panels start over on the model `training` holds now.
function showModel() {
  const trainer = training.trainer;
  view.usage = null;
  view.codes = null;
  view.latent = { variables: trainer.latent(), classes: trainer.classes() };
  describeLatent();
  chart.clear();
  clearAlert();
  writeSettings(trainer.config());
  $("model-summary").textContent =
    `Model ${trainer.summary()}: ${trainer.parameters().toLocaleString("en")} parameters, ` +
    `${trainer.stepSummary()}, ${trainer.stepsPerEpoch()} steps per epoch.`;
  showProgress();
  updateControls();
  // The views first, then what training needs. On a GPU a pipeline compiles when a pass first
  // needs it, which a software adapter takes its time over (about 0.7 s each on SwiftShader):
  // the samples need only the decoder's, and the training step's are made ready after the
  // views rather than at the first Train (which waits for them if pressed before).
  const onGpu = training.device.kind() === "gpu";
  const firstOnDevice = onGpu && training.preparedOn !== training.device;
  const views = refreshAll();
  (firstOnDevice ? saying("Preparing the GPU kernels…", views) : views)
    .then(() => onGpu && saying("Preparing the GPU kernels for training…", prepareTraining(trainer)));
}

// Makes the trainer ready to train (its GPU pipelines built), as a task: a Train pressed
// meanwhile starts after it.
const prepareTraining = failsSafely(async (trainer) => {
  if (training.trainer !== trainer) return;
  const device = training.device;
  await training.task((t) => t.prepare());
  training.preparedOn = device;
});

// A fresh model with the settings as they are now (Reset, Apply, Start over), paused.
function resetModel() {
  const parsed = readSettings();
  if (!parsed.ok) return;
  pauseWish();
  act(async () => {
    try {
      // The data may have changed since the click: the images are its size.
      replaceTrainer(await remote.trainer(training.device, { ...parsed.config, image: imageShape() }, training.data));
      forgetSession();
    } catch (err) {
      if (err && err.kind === "config") showFieldError(err); else throw err;
    }
  });
}

// The user's wish, said at once: what they asked for after this starts paused.
function pauseWish() {
  training.wanted = false;
  updateControls();
}

// After a lost device: a new device (the CPU if no GPU can be had now), and the weights from
// the last snapshot.
async function restart() {
  clearAlert();
  showStatus("loading", "Opening a new GPU device…");
  await training.openDevice();
  showDevice();
  try {
    const snapshot = training.snapshot, step = training.snapshotStep;
    const trainer = snapshot ? await remote.fromCheckpoint(training.device, snapshot, training.data)
      : await remote.trainer(training.device, readSettings().config, training.data);
    replaceTrainer(trainer, { step, snapshot });
    if (snapshot) $("data-message").textContent = `Restarted from the weights of step ${step}.`;
  } catch (err) {
    alertUser(`Could not restart: ${messageOf(err)}`, "Try again", () => act(restart));
  }
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
      chart.addTrain({ epoch: step / training.trainer.stepsPerEpoch(), loss: m.loss, reconstruction: m.reconstruction, kl: m.kl });
    }
    showProgress(metrics.at(-1).m);
  } finally {
    showDevice();
  }
}

// Moves the model between the GPU and the CPU (Training.switchDevice); the chart keeps its
// history, and training goes on there if it was wanted.
async function switchDevice() {
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
function restoreChart({ train, test }) {
  chart.train = train;
  chart.test = test;
  chart.draw();
  showProgress(train.at(-1));
  if (test.length) $("test-nelbo").textContent = test.at(-1).nelbo.toFixed(1);
}

// Kept for a restart after a lost device and for the next visit (Training.takeSnapshot).
async function takeSnapshot() {
  await training.takeSnapshot();
  persist(); // not awaited: the views need not wait for the disk (writes are kept in order)
}

// ---- Training ----

// Makes training follow the user's wish (`training.wanted`), once no change of the model is
// pending: a Train pressed while the page starts, or while a model is being replaced, starts
// training on the model that is there when it is done.
function settle() {
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
    chart.addTrain({ epoch, loss: m.loss, reconstruction: m.reconstruction, kl: m.kl });
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

function showProgress(m, rate) {
  const t = training.trainer;
  if (!t) return;
  $("epoch").textContent = training.totalEpochs().toFixed(2);
  $("step").textContent = String(training.totalSteps());
  const s = Math.floor(training.trainedMs / 1000);
  $("elapsed").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  if (m) $("loss").textContent = `${m.loss.toFixed(1)} (rec. ${m.reconstruction.toFixed(1)} + KL ${m.kl.toFixed(1)})`;
  else $("loss").textContent = $("test-nelbo").textContent = "–";
  const n = training.stepsPerSubmit;
  $("rate").textContent = rate ? `${Math.round(rate)} (${n} ${n === 1 ? "step" : "steps"}/submit)` : "–";
}

function updateControls() {
  const ready = !!training.trainer;
  const train = $("train");
  // Train can be pressed at any time, also before there is a model: it says what was asked.
  train.textContent = training.wanted ? "Pause" : "Train";
  train.disabled = !!training.broken;
  showPreparing();
  // A diverged model keeps its last good weights: they can still be saved and explored.
  for (const id of ["reset", "save", "switch-device", "new-samples", "more-digits", "apply", "data-files", "bundled", "load"]) {
    $(id).disabled = !ready || training.broken === "lost";
  }
  $("use-drawing").disabled = !ready || pad.empty;
}

// ---- Views ----

// The data's image size: every view draws images of this shape.
const imageShape = () => (training.data ? [training.data.rows(), training.data.cols()] : [SIDE, SIDE]);
const imagePixels = () => imageShape()[0] * imageShape()[1];
const draw = (canvas, images, cols) => drawDigits(canvas, images, cols, ...imageShape());

// The captions that depend on the latent type: what a prior sample, a code, a traversal and the
// chart's two figures are.
function describeLatent() {
  const { variables, classes } = view.latent;
  const text = (id, s) => { $(id).textContent = s; };
  if (classes) {
    text("samples-caption", `64 fixed prior codes, a random class for each of the ${variables} variables (one-hot), decoded as training goes on.`);
    text("chart-caption", "Training loss (relaxed: decoding Gumbel-softmax samples at the current τ) split into reconstruction " +
      "and KL; dots: the test set's discrete −ELBO (decoding one-hot samples) each epoch.");
    chart.labels = { loss: "loss (relaxed)", test: "test −ELBO (discrete)" };
    text("interp-caption", "Pick two digits: click one below, or draw one. Their class probabilities are mixed along a " +
      "straight path whose points are decoded.");
    text("traversal-caption", `Digit A's code with one variable switched to each of its ${classes} classes per row, the ` +
      "most-used variables (largest average KL) first. Variables the model does not use change nothing.");
  } else {
    text("samples-caption", "64 fixed codes z ~ N(0, I), decoded as training goes on.");
    text("chart-caption", "Training loss split into reconstruction and KL; dots: test-set −ELBO each epoch.");
    chart.labels = { loss: "loss", test: "test −ELBO" };
    text("interp-caption", "Pick two digits: click one below, or draw one. Their codes μ(x) are joined by a path whose " +
      "points are decoded.");
    text("traversal-caption", "Digit A's code with one dimension swept across the prior's range (5% to 95%) per row, the " +
      "most-used dimensions (largest average KL) first. Dimensions the model does not use change nothing.");
  }
  text("legend-loss", chart.labels.loss);
  text("legend-test", chart.labels.test);
  $("spherical-choice").hidden = !!classes;
}

async function refreshAll() {
  await refreshLight();
  await refreshLatent();
}

async function refreshLight() {
  await refreshSamples();
  await refreshRecon();
  await refreshInterpolation();
}

// What the per-pixel σ images show, for the model's likelihood. They are drawn as 2σ (white:
// σ of 0.5, the largest any distribution on [0, 1] can have).
function stdCaption(lik) {
  const what = lik.kind === "gaussian_var" ? "the decoder's own standard deviation per pixel: bright where it is unsure (stroke edges)"
    : lik.kind === "gaussian" ? `the fixed σ = ${Number(lik.sigma.toPrecision(3))} everywhere (this likelihood learns no variance)`
    : "the Bernoulli standard deviation √(p(1 − p)): bright where p is near 0.5";
  return `σ images: ${what}; white is σ = 0.5.`;
}

// The σ images of `run(trainer)` (2σ, so that σ = 0.5 is white), with their caption shown
// under the view `id`.
function stdImages(id, run) {
  return training.task(async (t) => {
    const caption = stdCaption(t.config().likelihood);
    const std = await run(t);
    $(`${id}-std-caption`).textContent = caption;
    $(`${id}-std-caption`).hidden = false;
    return std.map((s) => 2 * s);
  });
}

const refreshSamples = failsSafely(async () => {
  const seed = view.sampleSeed;
  const std = $("samples-std").checked;
  $("samples-std-caption").hidden = !std;
  const images = await (std ? stdImages("samples", async (t) => t.decodeStd(await t.priorCodes(64, seed)))
    : training.task(async (t) => t.decode(await t.priorCodes(64, seed))));
  draw($("samples"), images, 8);
});

const refreshRecon = failsSafely(async () => {
  const x = training.data.testImages(0, 10);
  const rows = [x, await training.task((t) => t.reconstruct(x))];
  const std = $("recon-std").checked;
  $("recon-std-caption").hidden = !std;
  if (std) rows.push(await stdImages("recon", (t) => t.reconstructStd(x)));
  const all = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  rows.reduce((at, r) => { all.set(r, at); return at + r.length; }, 0);
  draw($("recon"), all, 10);
});

function pickTest(i) {
  return { x: training.data.testImages(i, 1), label: `test digit ${training.data.testLabels()[i]} (#${i})` };
}

function drawGallery() {
  const gallery = $("gallery");
  gallery.replaceChildren();
  const labels = training.data.testLabels();
  for (let k = 0; k < GALLERY; k++) {
    const i = (view.galleryStart + k) % training.data.testCount();
    const button = document.createElement("button");
    button.type = "button";
    button.className = "digit";
    button.dataset.index = String(i);
    button.setAttribute("aria-label", `Test digit ${labels[i]}, number ${i}`);
    const canvas = document.createElement("canvas");
    draw(canvas, training.data.testImages(i, 1), 1);
    button.append(canvas);
    button.addEventListener("click", () => pick(pickTest(i)));
    gallery.append(button);
  }
}

function pick(p) {
  view.picks[view.slot] = p;
  // After choosing A, the next click chooses B.
  if (view.slot === "a") {
    view.slot = "b";
    document.querySelector('input[name="slot"][value="b"]').checked = true;
  }
  // The traversal starts from digit A's code, which the interpolation computes.
  refreshInterpolation().then(refreshTraversal);
}

// Slerp suits Gaussian codes only: categorical codes are probabilities, mixed linearly.
const spherical = () => !view.latent.classes && document.querySelector('input[name="path"]:checked').value === "spherical";

const refreshInterpolation = failsSafely(async () => {
  const { a, b } = view.picks;
  if (!a || !b) return;
  const pixels = imagePixels();
  const x = new Float32Array(2 * pixels);
  x.set(a.x);
  x.set(b.x, pixels);
  draw($("slot-a"), a.x, 1);
  draw($("slot-b"), b.x, 1);
  $("slot-a").setAttribute("aria-label", `Digit A: ${a.label}`);
  $("slot-b").setAttribute("aria-label", `Digit B: ${b.label}`);
  const { code } = await training.task((t) => t.encode(x));
  const half = code.length / 2;
  view.codes = { a: code.slice(0, half), b: code.slice(half) };
  const recon = await training.task((t) => t.reconstruct(x));
  draw($("slot-a-recon"), recon.subarray(0, pixels), 1);
  draw($("slot-b-recon"), recon.subarray(pixels), 1);
  const path = wasm.interpolate(view.codes.a, view.codes.b, STRIP, spherical());
  draw($("strip"), await training.task((t) => t.decode(path)), STRIP);
  await refreshScrub();
});

const refreshScrub = failsSafely(async () => {
  if (!view.codes) return;
  const t = Number($("scrub").value) / 100;
  const path = wasm.interpolate(view.codes.a, view.codes.b, 101, spherical());
  const latent = view.codes.a.length;
  const at = Math.round(t * 100) * latent;
  draw($("scrubbed"), await training.task((tr) => tr.decode(path.slice(at, at + latent))), 1);
});

// Average KL per dimension (or variable) and the scatter of test codes; the manifold when a
// Gaussian latent is 2-D.
const refreshLatent = failsSafely(async () => {
  const n = Math.min(MAP_POINTS, training.data.testCount());
  const x = training.data.testImages(0, n);
  const { mu, logvar, probabilities } = await training.task((t) => t.encode(x));
  const { variables: latent, classes } = view.latent;
  const kl = classes ? wasm.klPerVariable(probabilities, latent, classes) : wasm.klPerDimension(mu, logvar, latent);
  view.usage = Array.from(wasm.dimensionsByUse(kl), (dim) => ({ dim, kl: kl[dim] }));
  const [dx, dy] = latent === 1 ? [0, 0] : latent === 2 ? [0, 1] : [view.usage[0].dim, view.usage[1].dim];
  if (classes) drawClassMap(probabilities, n, dx, dy);
  else await drawCodeMap(mu, n, dx, dy);
  await refreshTraversal();
});

// Gaussian latents' map: mu of the test digits in dimensions dx and dy, coloured by label; with
// a 2-D latent space, the decoded manifold beside it.
async function drawCodeMap(mu, n, dx, dy) {
  const latent = view.latent.variables;
  const xs = [], ys = [];
  for (let i = 0; i < n; i++) {
    xs.push(mu[i * latent + dx]);
    ys.push(latent === 1 ? 0 : mu[i * latent + dy]);
  }
  drawScatter($("scatter"), xs, ys, training.data.testLabels());
  const manifold = $("manifold");
  manifold.hidden = latent !== 2;
  if (latent === 2) {
    const codes = wasm.manifoldCodes(new Float32Array(2), 0, 1, 20);
    draw(manifold, await training.task((t) => t.decode(codes)), 20);
    $("map-caption").textContent = "Left: digits decoded on a 20x20 grid of the prior's quantiles (the paper's " +
      "figure 4). Right: μ of test digits, coloured by label, on the same axes.";
  } else {
    $("map-caption").textContent = latent === 1
      ? "μ of test digits along the single latent dimension, coloured by label."
      : `μ of test digits in the two most-used dimensions, z${dx} (across) and z${dy} (up), coloured by label. ` +
        "Set the latent dimensions to 2 to see the decoded manifold.";
  }
}

// Categorical latents' map: each test digit at the most likely classes of the two most-used
// variables (jittered within the cell), coloured by its label.
function drawClassMap(probabilities, n, dx, dy) {
  const { variables, classes } = view.latent;
  const best = wasm.mostLikelyClasses(probabilities, classes);
  // A fixed jitter per digit and axis (a hash of both: murmur3's finaliser), so the map only
  // moves when classes change, and the two axes' jitters are unrelated.
  const jitter = (i, axis) => {
    let h = Math.imul(2 * i + axis + 1, 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return 0.1 + 0.8 * ((h ^ (h >>> 16)) >>> 0) / 4294967296;
  };
  const xs = [], ys = [];
  for (let i = 0; i < n; i++) {
    xs.push(best[i * variables + dx] + jitter(i, 0));
    ys.push(variables === 1 ? classes / 2 : best[i * variables + dy] + jitter(i, 1));
  }
  drawScatter($("scatter"), xs, ys, training.data.testLabels(), 0, classes, Array.from({ length: classes + 1 }, (_, k) => k));
  $("manifold").hidden = true;
  $("map-caption").textContent = variables === 1
    ? `Test digits by the most likely class (0 to ${classes - 1}, across) of the single variable, coloured by label.`
    : `Test digits placed by the most likely class (0 to ${classes - 1}) of the two most-used variables, v${dx} (across) ` +
      `and v${dy} (up), coloured by label: a cell is one pair of classes.`;
}

// Digit A's code (from the interpolation) with each dimension swept, most-used first; for
// categorical latents, each variable switched through its classes.
const refreshTraversal = failsSafely(async () => {
  if (!view.usage || !view.codes) return;
  const { classes } = view.latent;
  const dims = Uint32Array.from(view.usage.map((u) => u.dim));
  const steps = classes || TRAVERSAL_STEPS;
  const codes = classes ? wasm.classTraversalCodes(view.codes.a, dims, classes) : wasm.traversalCodes(view.codes.a, dims, steps);
  const images = await training.task((t) => t.decode(codes));
  const rows = view.usage.map(({ dim, kl }, r) => {
    const row = document.createElement("div");
    row.className = "trow";
    const label = document.createElement("span");
    const name = classes ? `v${dim}` : `z${dim}`;
    label.textContent = `${name} · KL ${kl.toFixed(2)}`;
    const canvas = document.createElement("canvas");
    canvas.className = "pixels";
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", classes
      ? `Digit A decoded with variable ${dim} set to each of its ${classes} classes (average KL ${kl.toFixed(2)} nats)`
      : `Digit A decoded with z${dim} swept from low to high (average KL ${kl.toFixed(2)} nats)`);
    draw(canvas, images.subarray(r * steps * imagePixels(), (r + 1) * steps * imagePixels()), steps);
    row.append(label, canvas);
    return row;
  });
  $("traversal").replaceChildren(...rows);
});

// ---- Settings ----

const INTEGER_FIELDS = ["latent", "batch_size"];
const NUMBER_FIELDS = ["beta", "learning_rate"];
// Errors about the layers are shown under the architecture's fields.
const FIELD_ERRORS = { decoder: "encoder", architecture: "encoder", channels: "encoder", dense: "encoder", hidden: "encoder", image: "encoder" };

function showFieldError(err) {
  const target = $(`${FIELD_ERRORS[err.field] || err.field}-error`) || $("settings-error");
  target.textContent = err.message;
  const input = document.querySelector(`#settings [name="${err.field}"]`);
  if (input) input.setAttribute("aria-invalid", "true");
}

function clearFieldErrors() {
  for (const p of document.querySelectorAll("#settings .field-error")) p.textContent = "";
  for (const i of document.querySelectorAll("#settings [aria-invalid]")) i.removeAttribute("aria-invalid");
}

// The form as a trainer configuration: { ok, config }, showing any error next to its field.
function readSettings() {
  clearFieldErrors();
  const form = $("settings").elements;
  const config = {};
  const problems = [];
  for (const name of INTEGER_FIELDS) {
    const v = Number(form[name].value);
    if (form[name].value.trim() === "" || !Number.isInteger(v)) problems.push({ field: name, message: "enter a whole number" });
    config[name] = v;
  }
  for (const name of NUMBER_FIELDS) {
    const v = Number(form[name].value);
    if (form[name].value.trim() === "" || !Number.isFinite(v)) problems.push({ field: name, message: "enter a number" });
    config[name] = v;
  }
  const sizes = (field, example) => {
    const list = form[field].value.split(/[\s,]+/).filter(Boolean).map(Number);
    if (!list.every((h) => Number.isInteger(h) && h > 0)) {
      problems.push({ field: "encoder", message: `enter whole numbers separated by commas, e.g. ${example}` });
    }
    return list;
  };
  if (form.kind.value === "conv") {
    const dense = Number(form.dense.value);
    if (!Number.isInteger(dense) || dense < 1) problems.push({ field: "encoder", message: "enter the dense width as a whole number" });
    config.architecture = { kind: "conv", channels: sizes("channels", "32, 64"), dense };
  } else {
    config.architecture = { kind: "mlp", hidden: sizes("hidden", "400 or 512, 256"), activation: form.activation.value };
  }
  config.image = imageShape();
  const number = (name, field) => {
    const v = Number(form[name].value);
    if (form[name].value.trim() === "" || !Number.isFinite(v)) problems.push({ field, message: `enter a number for ${name}` });
    return v;
  };
  const kind = form.likelihood.value;
  config.likelihood = kind === "gaussian" ? { kind, sigma: number("sigma", "likelihood") }
    : kind === "gaussian_var" ? { kind, variance_floor: number("variance_floor", "likelihood") }
    : { kind };
  config.latent_type = form.latent_kind.value === "categorical"
    ? { kind: "categorical", ...Object.fromEntries(["classes", "tau_start", "tau_floor", "tau_rate"].map((n) => [n, number(n, "latent_type")])) }
    : { kind: "gaussian" };
  if (problems.length === 0 && wasm) {
    try {
      wasm.validateConfig(config);
    } catch (err) {
      problems.push(err.field ? err : { field: "settings", message: messageOf(err) });
    }
  }
  problems.forEach(showFieldError);
  return { ok: problems.length === 0, config };
}

function writeSettings(c) {
  const form = $("settings").elements;
  // The trainer holds f32s: show 0.001, not 0.0010000000474974513.
  const short = (v) => String(Number(v.toPrecision(6)));
  form.latent.value = c.latent;
  const arch = c.architecture;
  if (arch) {
    form.kind.value = arch.kind;
    if (arch.kind === "conv") {
      form.channels.value = arch.channels.join(", ");
      form.dense.value = arch.dense;
    } else {
      form.hidden.value = arch.hidden.join(", ");
      form.activation.value = arch.activation;
    }
  }
  form.beta.value = short(c.beta);
  form.learning_rate.value = short(c.learning_rate);
  form.batch_size.value = c.batch_size;
  form.likelihood.value = c.likelihood.kind;
  if (c.likelihood.kind === "gaussian") form.sigma.value = short(c.likelihood.sigma);
  if (c.likelihood.kind === "gaussian_var") form.variance_floor.value = short(c.likelihood.variance_floor);
  form.latent_kind.value = c.latent_type.kind;
  if (c.latent_type.kind === "categorical") {
    form.classes.value = c.latent_type.classes;
    for (const n of ["tau_start", "tau_floor", "tau_rate"]) form[n].value = short(c.latent_type[n]);
  }
  showChosenFields();
  clearFieldErrors();
}

// Only the fields of the chosen architecture, likelihood and latent type are shown: the
// groups marked data-<choice> whose value is the selected option of the field named here.
const CHOICES = { arch: "kind", likelihood: "likelihood", latent: "latent_kind" };
function showChosenFields() {
  const form = $("settings").elements;
  for (const [choice, field] of Object.entries(CHOICES)) {
    for (const group of document.querySelectorAll(`#settings [data-${choice}]`)) group.hidden = group.dataset[choice] !== form[field].value;
  }
}

// ---- Files ----

const readFile = async (file) => new Uint8Array(await file.arrayBuffer());

async function loadDataFiles(input) {
  const files = Array.from(input.files);
  input.value = "";
  if (!files.length) return;
  const message = $("data-message");
  pauseWish();
  const bytes = Promise.all(files.map(readFile)); // read now: the files may change on disk
  act(async () => {
    try {
      const names = files.map((f) => f.name);
      const data = await remote.data(names, await bytes, training.device.maxBufferBytes());
      await setData(data, names.join(", "), { names, files: await bytes });
      message.dataset.state = "ok";
      message.textContent = `Loaded ${data.trainCount()} training and ${data.testCount()} test images; the model was reset.`;
    } catch (err) {
      message.dataset.state = "error";
      message.textContent = `Those files were not loaded, and nothing changed: ${messageOf(err)}`;
    }
  });
}

const save = failsSafely(async () => {
  const { bytes, step } = await training.checkpoint($("save-optimizer").checked);
  const c = training.trainer.config();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
  a.download = `vae-${c.architecture ? c.architecture.kind : "custom"}-z${c.latent}-step${step}.safetensors`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
});

function loadWeights(input) {
  const file = input.files[0];
  input.value = "";
  if (!file) return;
  pauseWish();
  const read = readFile(file);
  act(async () => {
    const message = $("data-message");
    try {
      const bytes = await read;
      const info = wasm.checkpointInfo(bytes);
      const trainer = await remote.fromCheckpoint(training.device, bytes, training.data);
      replaceTrainer(trainer, { step: info.step, snapshot: bytes });
      persist();
      message.dataset.state = "ok";
      message.textContent = info.resumes
        ? `Loaded ${file.name} (saved at step ${info.step} with Adam's state); training resumes exactly where it stopped.`
        : `Loaded ${file.name} (saved at step ${info.step}); training continues from these weights, Adam afresh.`;
    } catch (err) {
      message.dataset.state = "error";
      message.textContent = `${file.name} was not loaded, and nothing changed: ${messageOf(err)}`;
    }
  });
}

// ---- Wiring ----

$("train").addEventListener("click", () => {
  training.wanted = !training.wanted;
  settle();
});
$("reset").addEventListener("click", resetModel);
$("switch-device").addEventListener("click", () => act(switchDevice));
for (const field of Object.values(CHOICES)) $("settings").elements[field].addEventListener("change", showChosenFields);
$("save").addEventListener("click", save);
$("load").addEventListener("change", (e) => loadWeights(e.target));
$("data-files").addEventListener("change", (e) => loadDataFiles(e.target));
$("bundled").addEventListener("click", () => {
  pauseWish();
  act(() => useBundled().then(() => {
    $("data-message").textContent = "Using the bundled digits; the model was reset.";
  }).catch((err) => { $("data-message").textContent = `The bundled digits could not be loaded: ${messageOf(err)}`; }));
});
$("start-over").addEventListener("click", resetModel);
// A hidden tab may be closed without warning: keep what was trained for the next visit.
document.addEventListener("visibilitychange", () => {
  if (document.hidden && training.unsaved && !training.broken) takeSnapshot().catch(() => {});
});
$("samples-std").addEventListener("change", () => refreshSamples());
$("recon-std").addEventListener("change", () => refreshRecon());
$("new-samples").addEventListener("click", () => {
  view.sampleSeed += 1;
  refreshSamples();
});
$("more-digits").addEventListener("click", () => {
  view.galleryStart = (view.galleryStart + GALLERY) % training.data.testCount();
  drawGallery();
});
for (const radio of document.querySelectorAll('input[name="slot"]')) {
  radio.addEventListener("change", () => { view.slot = radio.value; });
}
for (const radio of document.querySelectorAll('input[name="path"]')) {
  radio.addEventListener("change", () => refreshInterpolation());
}
$("scrub").addEventListener("input", () => refreshScrub());
$("clear-pad").addEventListener("click", () => { pad.clear(); updateControls(); });
$("use-drawing").addEventListener("click", () => {
  const { width, height } = $("pad");
  pick({ x: wasm.centreDigit(pad.ink(), width, height, ...imageShape()), label: "your drawing" });
});
$("settings").addEventListener("submit", (e) => {
  e.preventDefault();
  resetModel();
});

$("scatter-legend").replaceChildren(...LABEL_COLOURS.map((colour, label) => {
  const li = document.createElement("li");
  li.innerHTML = `<span class="swatch" style="--c:${colour}"></span>${label}`;
  return li;
}));

// For tests and the curious: the model's owner, the views' state, and a way to try the
// lost-device path.
window.vae = { training, view, chart, busy: () => training.busy(), loseDevice: () => training.device.lose() };

if (window.wasmBindings) {
  start(window.wasmBindings);
} else {
  addEventListener("TrunkApplicationStarted", () => start(window.wasmBindings), { once: true });
}
// If the wasm module itself failed to load (old browser, blocked download), say so instead of
// leaving "Looking for WebGPU…" forever.
setTimeout(() => {
  if (!window.wasmBindings && $("gpu-status").dataset.state === "loading") {
    showStatus("error", "The page's WebAssembly module did not load, so the model cannot run here.", {
      advice: "Reload the page; if that does not help, use a recent browser (any with WebAssembly SIMD: Chrome 91, Firefox 89, Safari 16.4 or later).",
    });
    document.body.dataset.gpu = "unavailable";
  }
}, 15000);
