// `make bench`, browser half: opens the built page (../dist) in headless Chromium on WebGPU and
// runs the wasm benchmark there, printing its lines (`bench browser ms_per_step ...`); then the
// same step on the CPU path in WebAssembly, in the page's worker, on one thread and on every core
// (`bench browser-cpu model <m> threads <n> ms_per_step ...`, the median of CPU_ROUNDS rounds).
import { launch, ready, serve } from "./harness.mjs";

// DIST=path serves another build, for comparing two side by side (harness.mjs).
const { server, url } = await serve();
// For measuring what bounds the kernels, e.g. CHROMIUM_FLAGS=--enable-dawn-features=disable_robustness
const browser = await launch({ extra: process.env.CHROMIUM_FLAGS ? process.env.CHROMIUM_FLAGS.split(" ") : [] });
let code = 0;
try {
  const page = await browser.newPage();
  // KERNELS=software|hardware forces the GPU's kernel shape (otherwise the adapter chooses).
  const kernels = process.env.KERNELS || undefined;
  const bench = (model, n, device) => page.evaluate(([m, k, d, s]) => window.wasmBindings.benchmark(m, k, d, s)
    .catch((e) => { throw new Error(String(e?.message ?? e)); }), [model, n, device, kernels]);
  await page.goto(url);
  await page.waitForFunction(() => window.wasmBindings, null, { timeout: 60000 });
  // Each preset on its own page call, so a long conv run cannot hold the MLP's lines back.
  const models = (process.env.MODELS || "mlp conv").split(/\s+/).filter(Boolean);
  const samples = Number(process.env.SAMPLES || 15);
  for (const model of models) {
    // The conv and hvae steps take seconds on a software adapter: fewer samples keep the run short.
    const n = model === "mlp" ? samples : Number(process.env.CONV_SAMPLES || 5);
    for (const line of await bench(model, n, "gpu")) console.log(line);
  }
  // The CPU path in the page's worker, on the plain build (one thread) and on the threaded one
  // with a thread per core (the page is served cross-origin isolated), side by side: rounds
  // alternate between the two, so that a slow spell of this shared machine falls on both, and
  // each prints the line of its median round.
  await ready(page);
  const cores = await page.evaluate(() => Math.min(navigator.hardwareConcurrency, 8));
  const rounds = Number(process.env.CPU_ROUNDS || 5);
  for (const model of (process.env.CPU_MODELS || "mlp conv").split(/\s+/).filter(Boolean)) {
    const lines = await page.evaluate(async ([model, n, cores, rounds]) => {
      const { Remote } = await import("./remote.js");
      const remotes = [new Remote({ threads: 1 }), new Remote({ threads: cores })];
      const runs = remotes.map(() => []);
      for (let round = 0; round < rounds; round++) {
        for (const [i, remote] of remotes.entries()) {
          const lines = await remote.call("benchmark", { models: model, samples: n, device: "cpu" })
            .catch((e) => { throw new Error(String(e?.message ?? e)); });
          runs[i].push({ ms: Number(/ms_per_step (\S+)/.exec(lines[0])[1]), lines });
        }
      }
      return runs.flatMap((r) => [...r].sort((a, b) => a.ms - b.ms)[r.length >> 1].lines);
    }, [model, model === "mlp" ? 3 : 2, cores, rounds]);
    for (const line of lines) console.log(line);
  }
} catch (e) {
  console.error(`bench browser failed: ${e.message || JSON.stringify(e)}`);
  code = 1;
} finally {
  await browser.close();
  server.close();
}
process.exit(code);
