// The data panel and the files: the bundled digits or the user's own IDX files (a new dataset
// starts a fresh model on it), and the model's weights saved and loaded as .safetensors.
import { $, act, failsSafely, messageOf, remote, training, wasm } from "../page.js";
import { replaceTrainer } from "../model.js";
import { forgetSession, persist } from "./device.js";
import { pauseWish } from "./progress.js";
import { pickFirstDigits } from "./interpolation.js";
import { settingsOrReference } from "./settings.js";

export const BUNDLED = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
  "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"];
export const BUNDLED_NAME = "the bundled MNIST digits";

export async function fetchBundled() {
  return Promise.all(BUNDLED.map(async (name) => {
    const response = await fetch(`data/${name}`);
    if (!response.ok) throw new Error(`data/${name}: HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  }));
}

export async function useBundled() {
  const files = await fetchBundled();
  await setData(await remote.data(BUNDLED, files, training.device.maxBufferBytes()), BUNDLED_NAME, null);
}

// Replaces the dataset (made from `source`, see training.dataSource) and starts a fresh model on
// it; on any error both stay as they were.
async function setData(data, name, source) {
  const config = configFor(training.trainer ? training.trainer.config() : settingsOrReference(), data);
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

export function installData(data, name, source) {
  training.useData(data, source);
  $("data-summary").textContent =
    `Training on ${name}: ${data.trainCount()} training and ${data.testCount()} test images of ${data.rows()}x${data.cols()} pixels.`;
  pickFirstDigits();
}

// A configuration for `data`'s image size: one given as an architecture takes the new size;
// one with layers of its own (from a checkpoint) keeps them, and the trainer says if they fit.
function configFor(config, data) {
  if (!config.architecture) return config;
  const { input, encoder, decoder, ...rest } = config;
  return { ...rest, image: [data.rows(), data.cols()] };
}

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

$("save").addEventListener("click", save);
$("load").addEventListener("change", (e) => loadWeights(e.target));
$("data-files").addEventListener("change", (e) => loadDataFiles(e.target));
$("bundled").addEventListener("click", () => {
  pauseWish();
  act(() => useBundled().then(() => {
    $("data-message").textContent = "Using the bundled digits; the model was reset.";
  }).catch((err) => { $("data-message").textContent = `The bundled digits could not be loaded: ${messageOf(err)}`; }));
});
