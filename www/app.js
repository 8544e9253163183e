// The page: its panels (panels/*.js), each owning its part of the page and reading the model
// from one owner, `training` (training.js, shared through page.js); the model's lifecycle
// (model.js); and the trainer's worker (worker.js, driven through remote.js), where the model
// trains. This module starts it all once the page's wasm module is loaded.
import { act, connect, messageOf, training, view, $ } from "./page.js";
import { restoreSession } from "./model.js";
import { showDevice, showStatus } from "./panels/device.js";
import { chart, showPreparing } from "./panels/progress.js";
import { showWaiting as samplesWaiting } from "./panels/samples.js";
import { showWaiting as stripWaiting } from "./panels/interpolation.js";
import { useBundled } from "./panels/data.js";
import "./panels/latent.js";
import "./panels/settings.js";

// The views not drawn yet say what they wait for.
function showWaiting(text) {
  samplesWaiting(text);
  stripWaiting(text);
}

function start(bindings) {
  connect(bindings);
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

