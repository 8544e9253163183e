// `make bench`, browser half: opens the built page (../dist) in headless Chromium on WebGPU and
// runs the wasm benchmark there, printing its lines (`bench browser ms_per_step ...`); then the
// same step on the CPU path in WebAssembly, in the page's worker, on one thread and on every core
// (`bench browser-cpu model <m> threads <n> ms_per_step ...`).
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
    // The conv step takes seconds on a software adapter: fewer samples keep the run short.
    const n = model === "conv" ? Number(process.env.CONV_SAMPLES || 5) : samples;
    for (const line of await bench(model, n, "gpu")) console.log(line);
  }
  // The CPU path in the page's worker, on the plain build (one thread) and on the threaded one
  // with a thread per core (the page is served cross-origin isolated), side by side.
  // Once the page itself is idle (its first views drawn, its kernels prepared): its work would
  // share the cores.
  await ready(page);
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  const cpuBench = (model, n, threads) => page.evaluate(async ([m, n, threads]) => {
    const { Remote } = await import("./remote.js");
    const remote = new Remote({ threads });
    return remote.call("benchmark", { models: m, samples: n, device: "cpu" })
      .catch((e) => { throw new Error(String(e?.message ?? e)); });
  }, [model, n, threads]);
  for (const model of (process.env.CPU_MODELS || "mlp conv").split(/\s+/).filter(Boolean)) {
    for (const threads of [1, Math.min(cores, 8)]) {
      for (const line of await cpuBench(model, model === "conv" ? 5 : samples, threads)) console.log(line);
    }
  }
} catch (e) {
  console.error(`bench browser failed: ${e.message || JSON.stringify(e)}`);
  code = 1;
} finally {
  await browser.close();
  server.close();
}
process.exit(code);
