// The trainer's thread: a dedicated worker that holds the devices, the data trained on and the
// trainers (the wasm module's WebDevice, WebData and WebTrainer), so that a step on the CPU
// path, or a wait for the GPU, never holds up the page. The page drives it through remote.js:
// each message is { id, op, args }, answered by { id, result } or { id, error }, and a handle
// (a number) stands for each object living here. WebGPU is available in dedicated workers.

import { createStore, del, set } from "./vendor/idb-keyval.js";

let wasm; // the wasm-bindgen module, once the first message has loaded it
const objects = new Map(); // handle -> WebDevice, WebData or WebTrainer
let nextHandle = 1;

// Errors (wasm's { kind, message, field } objects, or Error) as something postMessage copies.
const plain = (err) => (err && typeof err === "object"
  ? { kind: err.kind, message: err.message ?? String(err), field: err.field, name: err.name, step: err.step }
  : { message: String(err) });

// What the page caches of each object, so that reading it needs no message.
function keep(object, describe) {
  const handle = nextHandle++;
  objects.set(handle, object);
  return { handle, ...describe(object) };
}

const deviceFacts = (d) => ({
  kind: d.kind(), description: d.describe(), adapterName: d.adapterName(), maxBufferBytes: d.maxBufferBytes(),
});

const trainerFacts = (t) => ({
  config: t.config(), latent: t.latent(), classes: t.classes(), codeLength: t.codeLength(), groups: t.groups(), summary: t.summary(),
  parameters: t.parameters(), stepsPerEpoch: t.stepsPerEpoch(), stepSummary: t.stepSummary(),
  backend: t.backend(), step: t.step(),
});

const get = (handle) => {
  const object = objects.get(handle);
  if (!object) throw { kind: "none", message: "that object was freed" };
  return object;
};

// The trainer's methods the page may call, and what each returns. Results that are arrays of
// pixels or codes are Float32Arrays, transferred rather than copied; `train` also says the
// trainer's step.
const TRAINER_METHODS = new Set(["save", "train", "evaluate", "importanceWeightedNll", "encode", "priorCodes", "decode",
  "reconstruct", "decodeStd", "reconstructStd", "variations", "prepare"]);

// The session's records (see app.js), written here: IndexedDB clones a value on the thread that
// writes it, and a checkpoint with Adam's state is megabytes.
const sessionStore = createStore("webvae", "session");

const OPS = {
  store: ({ key, value }) => set(key, value, sessionStore),
  forget: ({ key }) => del(key, sessionStore),
  // The module: the threaded build with a pool of `threads` workers where the page asks for
  // more than one (it is cross-origin isolated), else, or if that fails, the plain one. Says
  // how many threads the CPU path has, and why the threaded build failed if it did.
  async load({ single, threaded, threads }) {
    let failure;
    if (threads > 1) {
      try {
        const bindings = await import(threaded.glue);
        await bindings.default({ module_or_path: threaded.module });
        await bindings.initThreadPool(threads);
        wasm = bindings;
        return { threads: wasm.threads() };
      } catch (err) {
        failure = plain(err).message;
        console.warn(`The CPU path runs on one thread: the threaded build could not start (${failure})`);
      }
    }
    const bindings = await import(single.glue);
    await bindings.default({ module_or_path: single.module });
    wasm = bindings;
    return { threads: 1, failure };
  },
  async requestGpu({ kernels }) {
    return keep(await wasm.WebDevice.requestGpu(kernels ?? undefined), deviceFacts);
  },
  cpuDevice() {
    return keep(wasm.WebDevice.cpu(), deviceFacts);
  },
  data({ names, files, maxBytes }) {
    return keep(wasm.WebData.fromFiles(names, files, maxBytes), (d) => ({
      trainCount: d.trainCount(), testCount: d.testCount(), rows: d.rows(), cols: d.cols(),
      testLabels: d.testLabels(), testPixels: d.testPixels(),
    }));
  },
  trainer({ device, config, data }) {
    return keep(new wasm.WebTrainer(get(device), config, get(data)), trainerFacts);
  },
  fromCheckpoint({ device, bytes, data }) {
    return keep(wasm.WebTrainer.fromCheckpoint(get(device), bytes, get(data)), trainerFacts);
  },
  async call({ handle, method, args }) {
    if (!TRAINER_METHODS.has(method)) throw { kind: "bug", message: `no trainer method ${method}` };
    const trainer = get(handle);
    try {
      const result = await trainer[method](...args);
      return method === "train" ? { metrics: result, step: trainer.step() } : result;
    } catch (err) {
      // Steps taken before a step failed (a diverged loss) still count.
      throw method === "train" ? { ...plain(err), step: trainer.step() } : err;
    }
  },
  // `make bench` (e2e/bench.mjs): the training step timed here, on this worker's build.
  benchmark({ models, samples, device, kernels }) {
    return wasm.benchmark(models, samples, device, kernels);
  },
  lose({ handle }) {
    get(handle).lose();
  },
  free({ handle }) {
    const object = objects.get(handle);
    objects.delete(handle);
    if (object) object.free();
  },
};

// Messages run in the order they come; an async one (a training submission, a decode) lets the
// next start while it waits, and the trainer's own lock keeps their calls apart.
self.onmessage = async ({ data: { id, op, args } }) => {
  try {
    const result = await OPS[op](args);
    const transfer = new Set();
    const collect = (v) => { if (ArrayBuffer.isView(v)) transfer.add(v.buffer); };
    collect(result);
    if (result && typeof result === "object" && !ArrayBuffer.isView(result)) Object.values(result).forEach(collect);
    self.postMessage({ id, result }, [...transfer]);
  } catch (err) {
    self.postMessage({ id, error: plain(err) });
  }
};
