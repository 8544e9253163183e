// The one owner of the model and its training: where it trains (a WebDevice: the GPU, or the CPU
// in WebAssembly), the data, the trainer, and the bookkeeping around them (steps behind loaded
// weights, the latest snapshot, time trained). The page's panels read its fields; only its
// methods change them. Every call into the trainer goes through `task`, one at a time: an async
// wasm method keeps the trainer borrowed until it resolves, and serialising also keeps at most
// one submission waiting.

const FRAME_MS = 40; // aim for this much work per submission, so frames stay under ~50 ms

export class Training {
  wasm = null; // the wasm-bindgen module, once loaded
  device = null; // where the model trains
  gpu = null; // the GPU device, if this browser gave one (kept while the CPU trains, to switch back)
  gpuError = null; // why there is no GPU device
  data = null; // the WebData trained on
  dataSource = null; // what it was made from, to make it again on the next visit: { names, files }, or null (bundled)
  trainer = null;
  running = false;
  broken = null; // "diverged" or "lost": training cannot go on until the user acts
  snapshot = null; // the latest checkpoint bytes, with Adam's state: for a restart and the next visit
  snapshotStep = 0;
  stepBase = 0; // steps behind the loaded weights: a model loaded from step N counts on from N
  trainedMs = 0;
  evaluatedEpoch = 0;
  stepsPerSubmit = 1;
  unsaved = false; // steps trained since the last snapshot
  #queue = Promise.resolve();
  #pending = 0; // tasks queued or running (tests wait for 0)

  busy() {
    return this.#pending > 0;
  }

  // Runs `fn(trainer)` after every task before it. The trainer is bound now: a task queued
  // before a reset must not run on the model that replaced it.
  task(fn) {
    const trainer = this.trainer;
    const run = this.#queue.then(() => {
      if (!trainer) throw { kind: "none", message: "no model yet" };
      return fn(trainer);
    });
    this.#pending += 1;
    this.#queue = run.catch(() => {}).finally(() => { this.#pending -= 1; });
    return run;
  }

  // The GPU if this browser gives one (a lost one is freed), otherwise the CPU.
  async openDevice() {
    const lost = this.gpu;
    try {
      this.gpu = await this.wasm.WebDevice.requestGpu();
      this.device = this.gpu;
      this.gpuError = null;
    } catch (err) {
      this.gpu = null;
      this.gpuError = err;
      this.device = this.wasm.WebDevice.cpu();
    }
    if (lost) lost.free();
  }

  // Makes `data` (made from `source`) the data trained on; the old data is freed.
  useData(data, source) {
    if (this.data) this.data.free();
    this.data = data;
    this.dataSource = source;
  }

  // A trainer in place of the current one (freed once the tasks in flight are done), `step`
  // steps into the model's history, with the snapshot it came from and the time trained so far.
  replace(trainer, { step = 0, snapshot = null, trainedMs = 0 } = {}) {
    this.running = false;
    const old = this.trainer;
    this.trainer = trainer;
    if (old) this.#queue.then(() => old.free());
    this.broken = null;
    this.snapshot = snapshot;
    this.snapshotStep = step;
    // A trainer resumed with Adam's state already counts its own steps.
    this.stepBase = step - trainer.step();
    this.trainedMs = trainedMs;
    this.evaluatedEpoch = Math.floor(step / trainer.stepsPerEpoch());
    this.stepsPerSubmit = 1;
  }

  // Moves the model between the GPU and the CPU with Adam's state: training goes on from the
  // same step as it would have on the first device.
  async switchDevice() {
    const { bytes, step } = await this.checkpoint(true);
    const target = this.device.kind() === "gpu" ? this.wasm.WebDevice.cpu() : this.gpu;
    const trainer = this.wasm.WebTrainer.fromCheckpoint(target, bytes, this.data);
    if (this.device !== this.gpu) this.device.free();
    this.device = target;
    this.replace(trainer, { step, snapshot: bytes, trainedMs: this.trainedMs });
  }

  // Steps and epochs of the model's whole history, including before it was loaded.
  totalSteps() {
    return this.stepBase + this.trainer.step();
  }

  totalEpochs() {
    return this.totalSteps() / this.trainer.stepsPerEpoch();
  }

  // The weights as a checkpoint, with the step they were reached at; with `optimizer`, Adam's
  // state too, so that loading it resumes training exactly.
  checkpoint(optimizer) {
    return this.task(async (t) => {
      const step = this.stepBase + t.step();
      return { bytes: await t.save(step, optimizer), step };
    });
  }

  // Keeps the weights with Adam's state: a restart or the next visit goes on as if uninterrupted.
  async takeSnapshot() {
    const { bytes, step } = await this.checkpoint(true);
    this.snapshot = bytes;
    this.snapshotStep = step;
    this.unsaved = false;
  }

  // One submission of steps, then its metrics (which waits for the GPU to finish them): `{ m,
  // steps, ms }`. The steps per submission adapt so that one takes about FRAME_MS: the GPU stays
  // busy, the queue never holds more than one submission, and the CPU path yields between frames.
  async trainSteps() {
    const n = this.stepsPerSubmit;
    const t0 = performance.now();
    const m = await this.task((t) => { t.train(n); return t.metrics(); });
    const ms = performance.now() - t0;
    this.unsaved = true;
    this.trainedMs += ms;
    this.stepsPerSubmit = Math.max(1, Math.min(256, Math.round(n * Math.min(2, Math.max(0.5, FRAME_MS / ms)))));
    return { m, steps: n, ms };
  }

  // Whether training has passed an epoch's end not yet evaluated (true once per epoch).
  reachedNewEpoch() {
    const epoch = Math.floor(this.totalEpochs());
    if (epoch <= this.evaluatedEpoch) return false;
    this.evaluatedEpoch = epoch;
    return true;
  }

  start() {
    if (this.running || this.broken || !this.trainer) return false;
    this.running = true;
    return true;
  }

  stop(broken = null) {
    this.running = false;
    if (broken) this.broken = broken;
  }
}
