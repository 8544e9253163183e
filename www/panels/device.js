// The device and session panel: where the model trains and why (the status box, with the
// switch between the GPU and the CPU), what went wrong (the alert), and the session kept in
// IndexedDB so that training survives a reload.
import { createStore, get as idbGet } from "../vendor/idb-keyval.js";
import { $, messageOf, remote, training } from "../page.js";
import { chart } from "./progress.js";
import { resetModel } from "../model.js";

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
export function showStatus(stateName, text, { advice = "", report = "" } = {}) {
  $("gpu-status").dataset.state = stateName;
  $("gpu-message").textContent = text;
  $("gpu-advice").textContent = advice;
  $("gpu-advice").hidden = !advice;
  $("gpu-report").textContent = report;
  $("gpu-details").hidden = !report;
}

// Which device trains, and why: the GPU's adapter; or the CPU, because the user chose it or
// because there is no GPU (the plain reason and advice, with the error's own report folded away).
export function showDevice() {
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
  if (!onGpu) $("gpu-message").textContent += ` ${threadsSentence()}`;
  $("switch-device").hidden = !training.gpu;
  $("switch-device").textContent = onGpu ? "Train on the CPU instead" : "Train on the GPU again";
}

// How many threads the CPU path uses, and why only one where that is so.
function threadsSentence() {
  return remote.threads > 1
    ? `It uses ${remote.threads} threads, one per core.`
    : `It uses one thread: ${remote.threadsWhy}.`;
}

export function alertUser(text, action, onAction) {
  $("alert-message").textContent = text;
  const button = $("alert-action");
  button.hidden = !action;
  button.textContent = action || "";
  button.onclick = onAction || null;
  $("alert").hidden = false;
}

export function clearAlert() {
  $("alert").hidden = true;
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

export function showSession(text, { startOver = false, error = false } = {}) {
  $("session-status").textContent = text;
  $("session-status").dataset.state = error ? "error" : "ok";
  $("session").hidden = !text;
  $("start-over").hidden = !startOver;
}

// Keeps the latest snapshot; a full quota (or no storage at all) is said, and training goes on.
// Never throws.
export async function persist() {
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
export function forgetSession() {
  remote.forget(SESSION_KEY);
  remote.forget(DATA_KEY);
  storedData = undefined;
  if ($("session-status").dataset.state !== "error") showSession("");
}

// The last visit's session, if there is one: { session, own } (own: the user's files it was
// trained on, { names, files }, or null for the bundled digits); null if there is none or no
// IndexedDB here (e.g. a private window). Throws, saying why, when this page cannot use it.
export async function readSession() {
  let session;
  try {
    session = await idbGet(SESSION_KEY, sessionStore);
  } catch {
    return null;
  }
  if (!session) return null;
  if (session.version !== SESSION_VERSION) throw new Error("it was saved by another version of this page");
  const own = session.ownData ? await idbGet(DATA_KEY, sessionStore) : null;
  if (session.ownData && !own) throw new Error("the files it was trained on were not kept");
  return { session, own };
}

// The session read is the model now; its files are the ones stored.
export function resumed({ session, own }) {
  storedData = own;
  const saved = new Date(session.savedAt).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  showSession(`Resumed from step ${session.step.toLocaleString("en")}, saved ${saved}.`, { startOver: true });
}

// A session that could not be used is discarded, saying why.
export function discardSession(err) {
  remote.forget(SESSION_KEY);
  remote.forget(DATA_KEY);
  showSession(`The training saved on your last visit could not be restored, and was discarded: ${messageOf(err)}`, { error: true });
}

$("start-over").addEventListener("click", resetModel);
