// The model's lifecycle: a new model shown in every panel, a fresh one from the settings, a
// restart after a lost device, the last visit's session restored, and the one error path. The
// panels (panels/*.js) own their parts of the page; this module tells them when the model
// behind them is replaced.
import { $, act, failsSafely, imageShape, messageOf, onFailure, remote, training, view } from "./page.js";
import { alertUser, clearAlert, discardSession, forgetSession, readSession, resumed, showDevice, showStatus } from "./panels/device.js";
import { chart, describeChart, restoreChart, saying, showProgress, updateControls, pauseWish } from "./panels/progress.js";
import { describeSamples, refreshRecon, refreshSamples, refreshVariations } from "./panels/samples.js";
import { describeInterpolation, refreshInterpolation } from "./panels/interpolation.js";
import { describeTraversal, refreshLatent } from "./panels/latent.js";
import { readSettings, settingsOrReference, showFieldError, writeSettings } from "./panels/settings.js";
import { BUNDLED, BUNDLED_NAME, fetchBundled, installData } from "./panels/data.js";

// Says what went wrong where the user will look; stops training when it cannot go on.
export function fail(err) {
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
onFailure(fail);

// A new model, in every panel; `from` says where in its history it starts (see Training.replace).
export function replaceTrainer(trainer, from = {}) {
  training.replace(trainer, from);
  showModel();
}

// The panels start over on the model `training` holds now.
export function showModel() {
  const trainer = training.trainer;
  view.usage = null;
  view.codes = null;
  view.latent = { variables: trainer.latent(), classes: trainer.classes() };
  const { variables, classes } = view.latent;
  const groups = trainer.groups();
  describeSamples(variables, classes, groups);
  describeChart(classes, groups);
  describeInterpolation(classes, groups);
  describeTraversal(classes, groups);
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
export function resetModel() {
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

// After a lost device: a new device (the CPU if no GPU can be had now), and the weights from
// the last snapshot.
export async function restart() {
  clearAlert();
  showStatus("loading", "Opening a new GPU device…");
  await training.openDevice();
  showDevice();
  try {
    const snapshot = training.snapshot, step = training.snapshotStep;
    const trainer = snapshot ? await remote.fromCheckpoint(training.device, snapshot, training.data)
      : await remote.trainer(training.device, settingsOrReference(), training.data);
    replaceTrainer(trainer, { step, snapshot });
    if (snapshot) $("data-message").textContent = `Restarted from the weights of step ${step}.`;
  } catch (err) {
    alertUser(`Could not restart: ${messageOf(err)}`, "Try again", () => act(restart));
  }
}

// The last visit's session, if there is one and it still fits: data, model, Adam's state and
// chart, all made before anything is replaced. One that does not fit is said and discarded.
// Resolves to whether a session was restored.
export async function restoreSession() {
  let data = null;
  try {
    const kept = await readSession();
    if (!kept) return false;
    const { session, own } = kept;
    const [names, files] = own ? [own.names, own.files] : [BUNDLED, await fetchBundled()];
    data = await remote.data(names, files, training.device.maxBufferBytes());
    const trainer = await remote.fromCheckpoint(training.device, session.checkpoint, data);
    installData(data, own ? own.names.join(", ") : BUNDLED_NAME, own);
    replaceTrainer(trainer, { step: session.step, snapshot: session.checkpoint, trainedMs: session.trainedMs });
    restoreChart(session.chart);
    resumed(kept);
    return true;
  } catch (err) {
    if (data && training.data !== data) data.free();
    discardSession(err);
    return false;
  }
}

// Every view of the model; the light ones (redrawn more often while training).
export async function refreshAll() {
  await refreshLight();
  await refreshLatent();
}

export async function refreshLight() {
  await refreshSamples();
  await refreshRecon();
  await refreshVariations();
  await refreshInterpolation();
}
