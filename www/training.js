// The one owner of the model and its training: where it trains (a device: the GPU, or the CPU
// in WebAssembly), the data, the trainer, and the bookkeeping around them (steps behind loaded
// weights, the latest snapshot, time trained). The page's panels read its fields; only its
// methods change them. The device, the data and the trainer live in the trainer's worker; the
// objects here are their stand-ins (remote.js), with the wasm objects' methods.
//
// A user may click anything at any moment, so two queues keep order:
// - `task`: every call into the trainer, one at a time. (The wasm trainer itself is safe to call
//   at any time, but its calls serialised here keep at most one submission waiting, let a task
//   for a model that was replaced meanwhile be skipped rather than run on the wrong model, and
//   let the views' calls take their turns between training submissions.)
// - `change`: every action that replaces the model, its device or its data (startup, reset,
//   loading weights or data, switching device, restarting), one after another in the order the
//   user asked for them, so that none is lost or undone by one that started earlier.
// Whether training runs is the user's wish, `wanted`, set at once when they press Train or
// Pause (or an action that resets the model); the page makes it so when no change is pending.

const FRAME_MS = 40; // aim for this much work per submission, so frames stay under ~50 ms
const PARAMS = new URLSearchParams(globalThis.location?.search ?? "");

// Times training steps run by `run(n)` (resolving when they are done, to their metrics): one to
// warm up (the first compiles kernels and fills caches), then pairs, up to 3 pairs or ~400 ms;
// one whose first step already took 5 times `boundMs` (the other device's step) is clearly
// slower and is not timed further. Resolves to { msPerStep, ms (all of it), steps, metrics: [{ m,
// steps }] }.
async function timeSteps(run, boundMs = Infinity) {
  const metrics = [];
  let t = performance.now();
  metrics.push({ m: await run(1), steps: 1 });
  const warm = performance.now() - t;
  let ms = 0, steps = 0;
  if (warm < 5 * boundMs) {
    for (let pairs = 0; pairs < 3 && ms < 400; pairs++) {
      t = performance.now();
      metrics.push({ m: await run(2), steps: 2 });
      ms += performance.now() - t;
      steps += 2;
    }
  }
  return { msPerStep: steps ? ms / steps : warm, ms: ms + warm, steps: 1 + steps, metrics };
}

export class Training {
  remote = null; // the trainer's worker (remote.js): makes devices, data and trainers there
  device = null; // where the model trains
  gpu = null; // the GPU device, if this browser gave one (kept while the CPU trains, to switch back)
  gpuError = null; // why there is no GPU device
  data = null; // the WebData trained on
  dataSource = null; // what it was made from, to make it again on the next visit: { names, files }, or null (bundled)
  trainer = null;
  wanted = false; // the user asked to train (the button reads Pause)
  running = false; // a training loop is running, the `run`th one
  run = 0;
  broken = null; // "diverged" or "lost": training cannot go on until the user acts
  snapshot = null; // the latest checkpoint bytes, with Adam's state: for a restart and the next visit
  snapshotStep = 0;
  stepBase = 0; // steps behind the loaded weights: a model loaded from step N counts on from N
  trainedMs = 0;
  evaluatedEpoch = 0;
  stepsPerSubmit = 1;
  // How the device that trains is chosen: "auto" (the next Train first times a few steps on the
  // GPU and on the CPU, and trains on the faster: `pickFaster`), "made" (done, for this GPU
  // device), "user" (switched by hand), or "forced" (the page's `?device=gpu|cpu`).
  choice = "auto";
  choiceNote = ""; // what the timing measured, for the device line
  choiceMs = 0; // how long the timing took
  preparedOn = null; // the device a model was last made ready to train on (WebTrainer.prepare)
  unsaved = false; // steps trained since the last snapshot
  #queue = Promise.resolve();
  #pending = 0; // tasks queued or running
  #changes = Promise.resolve();
  #changing = 0; // changes queued or running

  // Whether anything is queued or running (tests wait for nothing to be).
  busy() {
    return this.#pending > 0 || this.#changing > 0;
  }

  // Whether a change is queued or running: the model may be about to be replaced.
  changing() {
    return this.#changing > 0;
  }

  // Runs `fn(trainer)` on the current trainer after every task before it. If that is no longer
  // the model trained when the task's turn comes or when it ends (it was replaced), the task is
  // skipped or its result dropped: it rejects with kind "none", which the page ignores.
  task(fn) {
    const trainer = this.trainer;
    const current = () => {
      if (!trainer || trainer !== this.trainer) throw { kind: "none", message: "no model, or not this one any more" };
    };
    const run = this.#queue.then(async () => {
      current();
      const result = await fn(trainer);
      current(); // replaced meanwhile: its result would be drawn over the new model's views
      return result;
    });
    this.#pending += 1;
    this.#queue = run.catch(() => {}).finally(() => { this.#pending -= 1; });
    return run;
  }

  // Runs `fn()` after every change before it; resolves or rejects as it does. When the last
  // change queued has ended, calls `settled()` (the page makes training follow `wanted`).
  change(fn) {
    const run = this.#changes.then(fn);
    this.#changing += 1;
    this.#changes = run.catch(() => {}).finally(() => {
      this.#changing -= 1;
      if (this.#changing === 0) this.settled();
    });
    return run;
  }

  settled() {}

  // The GPU if this browser gives one (a lost one is freed), otherwise the CPU. The page's
  // `?kernels=software|hardware` forces the GPU's kernel shape (otherwise its adapter chooses).
  async openDevice() {
    const lost = this.gpu;
    try {
      const kernels = PARAMS.get("kernels");
      this.gpu = await this.remote.requestGpu(kernels ?? undefined);
      this.device = this.gpu;
      this.gpuError = null;
    } catch (err) {
      this.gpu = null;
      this.gpuError = err;
      this.device = await this.remote.cpu();
    }
    if (lost) lost.free();
    // A new GPU device is timed afresh at the next Train, unless the page's address decides.
    const forced = PARAMS.get("device");
    this.choice = forced === "gpu" || forced === "cpu" ? "forced" : "auto";
    this.choiceNote = "";
    if (forced === "cpu" && this.gpu) this.device = await this.remote.cpu();
  }

  // Whether the next Train should first time both devices (`pickFaster`).
  shouldChoose() {
    return this.choice === "auto" && !!this.gpu && !!this.trainer && !this.broken;
  }

  // Times a few training steps of the model on the GPU and on the CPU, from the same weights and
  // Adam's state, and keeps training on the faster. The trainer timed there goes on, so its
  // steps are the model's next ones (none lost, none trained twice); the other's are dropped.
  // Resolves to { metrics (of the steps kept, in order: [{ m, steps }]), firstStep (the step
  // they follow) }; `choiceNote` says what was measured.
  async pickFaster() {
    this.choice = "made";
    // (The checkpoint waits for the tasks queued before it, e.g. the first views of a Train
    // pressed during startup: not part of the timing's cost.)
    const { bytes, step } = await this.checkpoint(true);
    const onGpu = this.device.kind() === "gpu";
    const otherDevice = onGpu ? await this.remote.cpu() : this.gpu;
    let other = null, adopted = false;
    try {
      other = await this.remote.fromCheckpoint(otherDevice, bytes, this.data);
      // The GPU's pipelines are built before the clock starts: compiling them is paid once,
      // whichever device trains, and is not what is compared.
      await (onGpu ? this.task((t) => t.prepare()) : other.prepare());
      const t0 = performance.now();
      const here = (n) => this.task((t) => t.train(n));
      const there = (n) => other.train(n);
      // The CPU first: its step bounds how long the GPU is timed.
      const cpu = await timeSteps(onGpu ? there : here);
      const gpu = await timeSteps(onGpu ? here : there, cpu.msPerStep);
      const gpuWins = gpu.msPerStep < cpu.msPerStep;
      const kept = gpuWins ? gpu : cpu;
      if (gpuWins !== onGpu) {
        if (this.device !== this.gpu) this.device.free();
        this.device = otherDevice;
        this.replace(other, { step: step + kept.steps, snapshot: bytes, trainedMs: this.trainedMs });
        this.snapshotStep = step; // the snapshot is from before the timed steps
        adopted = true;
      }
      this.trainedMs += kept.ms;
      this.unsaved = true;
      const batch = this.trainer.config().batch_size;
      const rate = (t) => Math.round((batch * 1000) / t.msPerStep).toLocaleString("en");
      this.choiceNote = `CPU ${rate(cpu)} samples/s, GPU ${rate(gpu)} samples/s (${this.gpu.adapterName()}): ` +
        `training on the ${gpuWins ? "GPU" : "CPU"}.`;
      this.choiceMs = performance.now() - t0;
      return { metrics: kept.metrics, firstStep: step };
    } finally {
      if (!adopted) {
        if (other) other.free();
        if (otherDevice !== this.gpu) otherDevice.free();
      }
    }
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
    this.stop();
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
    this.choice = "user";
    this.choiceNote = "";
    const { bytes, step } = await this.checkpoint(true);
    const target = this.device.kind() === "gpu" ? await this.remote.cpu() : this.gpu;
    let trainer;
    try {
      trainer = await this.remote.fromCheckpoint(target, bytes, this.data);
    } catch (err) {
      if (target !== this.gpu) target.free();
      throw err;
    }
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
  // busy, the queue never holds more than one submission, and the views get their turn between
  // submissions.
  async trainSteps() {
    const n = this.stepsPerSubmit;
    const t0 = performance.now();
    // Unsaved from now: a snapshot asked for while these steps are in flight (the tab hidden)
    // queues behind them and keeps them.
    this.unsaved = true;
    const m = await this.task((t) => t.train(n));
    const ms = performance.now() - t0;
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

  // Starts a training loop's run: its number, which stays `run` until the loop must end (a
  // pause, a new model); null when training cannot start now.
  start() {
    if (this.running || this.broken || !this.trainer) return null;
    this.running = true;
    this.run += 1;
    return this.run;
  }

  // Whether the loop of run `run` should go on.
  runs(run) {
    return this.running && this.run === run;
  }

  // Ends the running loop (after its submission in flight); `broken` says training cannot go on.
  stop(broken = null) {
    this.running = false;
    if (broken) {
      this.broken = broken;
      this.wanted = false;
    }
  }
}
