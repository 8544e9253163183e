// The page's script: waits for the wasm module (Trunk fires TrunkApplicationStarted once it is
// loaded and initialised), then asks it for the GPU and shows what it found, or why not.

const section = document.getElementById("gpu-status");
const message = document.getElementById("gpu-message");

function show(state, text) {
  section.dataset.state = state;
  message.textContent = text;
}

const HELP = {
  "no-webgpu":
    "Your browser does not support WebGPU, which this page needs to train on your GPU. " +
    "Try a recent Chrome or Edge (113+), Firefox (141+ on Windows), or Safari 26+.",
  "no-adapter":
    "Your browser supports WebGPU but did not offer a GPU adapter. Check that hardware " +
    "acceleration is enabled in the browser settings, or try another browser.",
  device: "The GPU adapter was found but refused to start a device for this page.",
};

async function probe(bindings) {
  try {
    const adapter = await bindings.probeGpu();
    show("ready", `WebGPU adapter: ${adapter}`);
  } catch (err) {
    const kind = err && err.kind;
    const detail = (err && err.message) || String(err);
    show("error", HELP[kind] ? `${HELP[kind]} (${detail})` : `Could not start the GPU: ${detail}`);
  }
}

if (window.wasmBindings) {
  probe(window.wasmBindings);
} else {
  addEventListener("TrunkApplicationStarted", () => probe(window.wasmBindings), { once: true });
}
// If the wasm module itself failed to load (old browser, blocked download), say so instead of
// leaving "Looking for WebGPU…" forever.
setTimeout(() => {
  if (!window.wasmBindings && section.dataset.state === "loading") {
    show("error", "The WebAssembly module did not load. This page needs a browser with WebAssembly and WebGPU.");
  }
}, 15000);
