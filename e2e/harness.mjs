// What the end-to-end tests share: the built site (../dist) served on localhost under a
// sub-path, headless Chromium with WebGPU (SwiftShader), a page watched for anything going
// wrong, and the test files they load.
import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { gunzipSync } from "node:zlib";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

// DIST=path serves another build (e.g. one from an earlier commit, to see a test fail there).
export const ROOT = process.env.DIST || fileURLToPath(new URL("../dist/", import.meta.url));
export const ARTIFACTS = fileURLToPath(new URL("../artifacts/", import.meta.url));
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm",
  ".css": "text/css", ".png": "image/png", ".gz": "application/gzip", ".json": "application/json" };

// The headers that isolate the page (`make serve` sends them too): the CPU path then loads the
// threaded build.
const ISOLATION = { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" };

// PLAIN=1 runs a test as a static host without the headers serves the page, with service
// workers kept out (they would isolate it): the plain build, one thread on the CPU path.
export const PLAIN = process.env.PLAIN === "1";

// A static file server for dist/, under a sub-path to prove the site works from one; resolves
// to { server, url }. With `isolated` false it sends no isolation headers, as a static host
// (GitHub Pages) does.
const BASE = "/webvae/";
export function serve({ isolated = !PLAIN } = {}) {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    if (!url.pathname.startsWith(BASE)) { res.writeHead(404).end(); return; }
    let path = normalize(decodeURIComponent(url.pathname.slice(BASE.length)) || "index.html");
    if (path.startsWith("..")) { res.writeHead(403).end(); return; }
    try {
      const body = await readFile(join(ROOT, path));
      const type = { "content-type": TYPES[extname(path)] || "application/octet-stream" };
      res.writeHead(200, isolated ? { ...type, ...ISOLATION } : type).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1",
    () => resolve({ server, url: `http://127.0.0.1:${server.address().port}${BASE}` })));
}

// Headless Chromium; with `webgpu`, WebGPU on SwiftShader; `extra` flags after ours. With
// PLAIN, its pages and contexts keep service workers out unless told otherwise.
export async function launch({ webgpu = true, extra = [] } = {}) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", ...(webgpu ? ["--enable-unsafe-webgpu", "--enable-features=Vulkan"] : ["--disable-gpu"]),
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--no-first-run", "--disable-quic", "--disable-dev-shm-usage", ...extra],
  });
  if (PLAIN) {
    for (const method of ["newContext", "newPage"]) {
      const open = browser[method].bind(browser);
      browser[method] = (options = {}) => open({ serviceWorkers: "block", ...options });
    }
  }
  return browser;
}

// What our wasm module says when it breaks: a panic, a borrow of an object already in use, a
// trap, an object freed while in use.
const WASM_TROUBLE = /panicked at|recursive use of an object|unreachable|RuntimeError|null pointer passed to rust|attempted to take ownership/;

// Collects, for the whole life of `page`, every page error, console error (the page's or its
// worker's), failed request or HTTP error, and any message of any kind from wasm that means it
// broke. Returns the list.
export function watch(page) {
  const problems = [];
  const listen = (where) => (m) => {
    if (m.type() === "error") problems.push(`console${where}: ${m.text()}`);
    else if (WASM_TROUBLE.test(m.text())) problems.push(`console${where} ${m.type()}: ${m.text()}`);
  };
  page.on("console", listen(""));
  // The trainer's worker (worker.js) has a console of its own: a panic in it is logged there.
  page.on("worker", (worker) => worker.on("console", listen(" (worker)")));
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  return problems;
}

// Waits until the page's model exists and nothing is queued or running.
export const ready = (page) => page.waitForFunction(() => window.vae && window.vae.training.trainer && !window.vae.busy(),
  null, { timeout: 120000 });

// Milliseconds from `t0` (Date.now() before navigating) until the sample grid is drawn with
// digits: a canvas the page has drawn on (drawDigits marks it; before that it says what it waits
// for) with some ink.
export async function firstSamplesMs(page, t0) {
  await page.waitForFunction(() => {
    const c = document.getElementById("samples");
    if (!c || c.dataset.drawn === undefined) return false;
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4) if (d[i] > 0) return true;
    return false;
  }, null, { timeout: 120000, polling: 20 });
  return Date.now() - t0;
}

// From navigation to the first samples, on either device (WebGPU on SwiftShader, or the CPU
// path): the issue's bound on our machines (a 2-core EPYC).
export const FIRST_SAMPLES_MAX_MS = 3000;

// A canvas's pixels, as an array of grey levels (its red channel).
export const greyLevels = (page, id) => page.evaluate((id) => {
  const c = document.getElementById(id);
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  return Array.from({ length: d.length / 4 }, (_, i) => d[4 * i]);
}, id);

// The step of the session the page keeps in IndexedDB for the next visit, or null.
export const storedStep = (page) => page.evaluate(async () => {
  const kv = await import("./vendor/idb-keyval.js");
  const s = await kv.get("current", kv.createStore("webvae", "session"));
  return s ? s.step : null;
});

// Runs each of `fns` before any script of `target` (a page or a browser context; once per
// target) in the page and in the trainer's worker (worker.js, which gets them prepended): what a
// browser does or lacks is so in both. They must run in either (a Window or a WorkerGlobalScope).
export async function inPageAndWorker(target, ...fns) {
  for (const fn of fns) await target.addInitScript(fn);
  await target.route(/\/worker\.js$/, async (route) => {
    const response = await route.fetch();
    route.fulfill({ response, body: `${fns.map((fn) => `(${fn})();\n`).join("")}${await response.text()}` });
  });
}

// This browser has no WebGPU, in the page and in its worker: the page trains on the CPU path.
export const withoutWebGpu = () =>
  Object.defineProperty((self.WorkerNavigator ?? self.Navigator).prototype, "gpu", { get: () => undefined });

// The first 1000 test digits, padded by 2 pixels on each side, as one IDX images file and its
// labels (the page holds out the last tenth for testing), for `setInputFiles`.
export async function digits32() {
  const n = 1000;
  const images = gunzipSync(await readFile(join(ROOT, "data/t10k-images-idx3-ubyte.gz")));
  const labels = gunzipSync(await readFile(join(ROOT, "data/t10k-labels-idx1-ubyte.gz")));
  const idx = Buffer.alloc(16 + n * 32 * 32);
  idx.writeUInt32BE(0x803, 0); idx.writeUInt32BE(n, 4); idx.writeUInt32BE(32, 8); idx.writeUInt32BE(32, 12);
  for (let k = 0; k < n; k++) {
    for (let y = 0; y < 28; y++) images.copy(idx, 16 + k * 1024 + (y + 2) * 32 + 2, 16 + k * 784 + y * 28, 16 + k * 784 + y * 28 + 28);
  }
  const lab = Buffer.alloc(8 + n);
  lab.writeUInt32BE(0x801, 0); lab.writeUInt32BE(n, 4);
  labels.copy(lab, 8, 8, 8 + n);
  return [
    { name: "digits32-images-idx3-ubyte", mimeType: "application/octet-stream", buffer: idx },
    { name: "digits32-labels-idx1-ubyte", mimeType: "application/octet-stream", buffer: lab },
  ];
}
