// The page's side of the trainer's worker (worker.js): stand-ins for the wasm module's WebDevice,
// WebData and WebTrainer with the same methods, whose work runs in the worker. What describes
// an object (a device's kind, a model's configuration and summary, its step) is read once and
// kept here, so reading it costs no message; everything else returns a promise. The views'
// pure functions (interpolation, traversal codes, …) stay on the page's own wasm module: they
// are quick, and need no trainer.

// Elements copied per task when a value is stored (Remote.store): 2 MB of bytes, a few ms.
const COPY_CHUNK = 1 << 21;

// The CPU path's threads at most: a batch of 128 split further gains little.
const MAX_THREADS = 8;

export class Remote {
  #worker;
  #calls = new Map(); // id -> { resolve, reject }
  #nextId = 1;
  #loaded;
  #storing = Promise.resolve(); // the session's writes, in order

  // The CPU path's threads once the worker has loaded (1 until then), and why only one if so.
  threads = 1;
  threadsWhy = "";

  // The worker loads the page's own module (its glue script and wasm file are where Trunk's
  // loader named them, the preload links) or, where the page is cross-origin isolated, the
  // threaded build (dist/threads/, scripts/build-threads.sh) with a thread per core, at most
  // MAX_THREADS. `threads` forces the count (1: the plain build), for comparisons.
  constructor({ threads } = {}) {
    this.#worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    this.#worker.onmessage = ({ data: { id, result, error } }) => {
      const call = this.#calls.get(id);
      this.#calls.delete(id);
      if (error) call.reject(error); else call.resolve(result);
    };
    // A worker that fails to load or throws outside a call: said in the console, and every
    // call waiting on it fails with the reason.
    this.#worker.onerror = (event) => {
      const error = { message: `the trainer's worker failed: ${event.message || "it could not be loaded"}` };
      console.error(error.message);
      for (const call of this.#calls.values()) call.reject(error);
      this.#calls.clear();
    };
    const href = (selector) => new URL(document.querySelector(selector).getAttribute("href"), document.baseURI).href;
    const url = (path) => new URL(path, document.baseURI).href;
    const cores = navigator.hardwareConcurrency || 1;
    const wanted = threads ?? (self.crossOriginIsolated ? Math.min(cores, MAX_THREADS) : 1);
    this.#loaded = this.#send("load", {
      single: { glue: href('link[rel="modulepreload"]'), module: href('link[rel="preload"][type="application/wasm"]') },
      threaded: { glue: url("threads/webvae.js"), module: url("threads/webvae_bg.wasm") },
      threads: wanted,
    }).then(({ threads, failure }) => {
      this.threads = threads;
      this.threadsWhy = threads > 1 ? ""
        : failure ? `the threaded build could not start (${failure})`
        : !self.crossOriginIsolated ? "this page is not cross-origin isolated, so WebAssembly cannot share memory between threads"
        : cores === 1 ? "this device reports one core" : "as asked";
    });
  }

  #send(op, args, transfer = []) {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject });
      this.#worker.postMessage({ id, op, args }, transfer);
    });
  }

  // Sends once the worker has the module.
  async call(op, args, transfer) {
    await this.#loaded;
    return this.#send(op, args, transfer);
  }

  // A freed object's handle is let go in the worker (no answer is awaited).
  free(handle) {
    this.call("free", { handle }).catch(() => {});
  }

  // Writes `value` under `key` in the session's IndexedDB store (app.js reads it at startup):
  // in the worker, where cloning megabytes of checkpoint into the database holds up no frame.
  // Writes and deletions take effect in the order they were asked for (a copy takes a few tasks).
  store(key, value) {
    return this.#inTurn(() => this.#store(key, value));
  }

  forget(key) {
    this.#inTurn(() => this.call("forget", { key })).catch(() => {});
  }

  #inTurn(fn) {
    const run = this.#storing.then(fn);
    this.#storing = run.catch(() => {});
    return run;
  }

  async #store(key, value) {
    // Its byte arrays (a checkpoint, the user's files) go as copies handed over: cloning
    // megabytes into the message took ~50 ms per 20 MB here, and a copy filled a few MB per
    // task keeps every task of the page's thread short. The rest is cloned by postMessage.
    const copies = []; // [original, copy]
    const swapped = (v) => {
      if (ArrayBuffer.isView(v)) {
        const copy = new v.constructor(v.length);
        copies.push([v, copy]);
        return copy;
      }
      if (Array.isArray(v)) return v.map(swapped);
      if (v && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
        return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, swapped(x)]));
      }
      return v;
    };
    const message = swapped(value);
    for (const [original, copy] of copies) {
      for (let at = 0; at < original.length; at += COPY_CHUNK) {
        copy.set(original.subarray(at, at + COPY_CHUNK), at);
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    }
    return this.call("store", { key, value: message }, copies.map(([, copy]) => copy.buffer));
  }

  async requestGpu(kernels) {
    return new RemoteDevice(this, await this.call("requestGpu", { kernels }));
  }

  async cpu() {
    return new RemoteDevice(this, await this.call("cpuDevice", {}));
  }

  // The data from IDX files, parsed in the worker; the views read its test images from here.
  async data(names, files, maxBytes) {
    return new RemoteData(this, await this.call("data", { names, files, maxBytes }));
  }

  async trainer(device, config, data) {
    return new RemoteTrainer(this, await this.call("trainer", { device: device.handle, config, data: data.handle }));
  }

  async fromCheckpoint(device, bytes, data) {
    return new RemoteTrainer(this, await this.call("fromCheckpoint", { device: device.handle, bytes, data: data.handle }));
  }
}

// An object living in the worker: its handle there, and what was read of it once.
class Handle {
  constructor(remote, facts) {
    this.remote = remote;
    this.facts = facts;
    this.handle = facts.handle;
  }
  free() { this.remote.free(this.handle); }
}

export class RemoteDevice extends Handle {
  kind() { return this.facts.kind; }
  describe() { return this.facts.description; }
  adapterName() { return this.facts.adapterName; }
  maxBufferBytes() { return this.facts.maxBufferBytes; }
  lose() { return this.remote.call("lose", { handle: this.handle }); }
}

// The data trained on, in the worker; the test set's images and labels are kept here too, for
// the views (bytes, as the worker holds them: `testImages` gives floats in [0, 1] as the wasm
// module's does, each byte / 255).
export class RemoteData extends Handle {
  trainCount() { return this.facts.trainCount; }
  testCount() { return this.facts.testCount; }
  rows() { return this.facts.rows; }
  cols() { return this.facts.cols; }
  // Test images `start..start + n` (clamped to the set), image after image.
  testImages(start, n) {
    const size = this.facts.rows * this.facts.cols;
    const end = Math.min(start + n, this.facts.testCount);
    const bytes = this.facts.testPixels.subarray(Math.min(start, end) * size, end * size);
    return Float32Array.from(bytes, (p) => p / 255);
  }
  testLabels() { return this.facts.testLabels; }
}

export class RemoteTrainer extends Handle {
  #step = this.facts.step;
  #call(method, ...args) {
    return this.remote.call("call", { handle: this.handle, method, args });
  }
  config() { return structuredClone(this.facts.config); }
  latent() { return this.facts.latent; }
  classes() { return this.facts.classes; }
  codeLength() { return this.facts.codeLength; }
  // A hierarchy's groups of latents, top first ("z1 20"); none for a layer stack.
  groups() { return this.facts.groups; }
  summary() { return this.facts.summary; }
  parameters() { return this.facts.parameters; }
  stepsPerEpoch() { return this.facts.stepsPerEpoch; }
  stepSummary() { return this.facts.stepSummary; }
  backend() { return this.facts.backend; }
  // Steps taken, as of the last `train` answered (the page's queue waits for each).
  step() { return this.#step; }
  async train(n) {
    try {
      const { metrics, step } = await this.#call("train", n);
      this.#step = step;
      return metrics;
    } catch (err) {
      if (err && err.step !== undefined) this.#step = err.step;
      throw err;
    }
  }
  save(step, optimizer) { return this.#call("save", step, optimizer); }
  evaluate() { return this.#call("evaluate"); }
  importanceWeightedNll(k) { return this.#call("importanceWeightedNll", k); }
  encode(x) { return this.#call("encode", x); }
  priorCodes(n, seed) { return this.#call("priorCodes", n, seed); }
  decode(z) { return this.#call("decode", z); }
  reconstruct(x) { return this.#call("reconstruct", x); }
  decodeStd(z) { return this.#call("decodeStd", z); }
  reconstructStd(x) { return this.#call("reconstructStd", x); }
  variations(x, n, keep, seed) { return this.#call("variations", x, n, keep, seed); }
  prepare() { return this.#call("prepare"); }
}
