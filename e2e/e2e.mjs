// End-to-end: serves the built site (../dist) on localhost, opens it in headless Chromium with
// WebGPU (SwiftShader), and checks what a user would see. Screenshots go to ../artifacts/.
import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { readFile, mkdir } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../dist/", import.meta.url));
const ARTIFACTS = fileURLToPath(new URL("../artifacts/", import.meta.url));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm",
  ".css": "text/css", ".png": "image/png", ".gz": "application/gzip", ".json": "application/json" };

// A static file server for dist/, under a sub-path to prove the site works from one.
const BASE = "/webvae/";
function serve() {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    if (!url.pathname.startsWith(BASE)) { res.writeHead(404).end(); return; }
    let path = normalize(decodeURIComponent(url.pathname.slice(BASE.length)) || "index.html");
    if (path.startsWith("..")) { res.writeHead(403).end(); return; }
    try {
      const body = await readFile(join(ROOT, path));
      res.writeHead(200, { "content-type": TYPES[extname(path)] || "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

const results = [];
async function check(name, fn) {
  const start = Date.now();
  try {
    await fn();
    results.push([name, null]);
    console.log(`ok   ${name} (${Date.now() - start} ms)`);
  } catch (e) {
    results.push([name, e]);
    console.log(`FAIL ${name}: ${e.message}`);
  }
}
function assert(cond, message) { if (!cond) throw new Error(message); }

const server = await serve();
const url = `http://127.0.0.1:${server.address().port}${BASE}`;
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"],
});
await mkdir(ARTIFACTS, { recursive: true });
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });

  await check("page loads from a sub-path and reports the WebGPU adapter", async () => {
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById("gpu-status").dataset.state !== "loading",
      null, { timeout: 60000 });
    const state = await page.getAttribute("#gpu-status", "data-state");
    const text = await page.textContent("#gpu-message");
    console.log(`     page says: ${text}`);
    assert(state === "ready", `expected state "ready", got "${state}": ${text}`);
    assert(/WebGPU adapter: \S/.test(text), `no adapter named: ${text}`);
    await page.screenshot({ path: join(ARTIFACTS, "page.png"), fullPage: true });
  });

  await check("no errors in the console", async () => {
    assert(problems.length === 0, problems.join("; "));
  });

  await check("a browser without WebGPU gets a clear message", async () => {
    const p2 = await browser.newPage();
    await p2.addInitScript(() => { Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }); });
    await p2.goto(url);
    await p2.waitForFunction(() => document.getElementById("gpu-status").dataset.state !== "loading",
      null, { timeout: 60000 });
    const text = await p2.textContent("#gpu-message");
    assert((await p2.getAttribute("#gpu-status", "data-state")) === "error", "not an error state");
    assert(/does not support WebGPU/.test(text), `unexpected message: ${text}`);
    await p2.close();
  });

  await check("a null adapter gets a clear message", async () => {
    const p3 = await browser.newPage();
    await p3.addInitScript(() => { GPU.prototype.requestAdapter = async () => null; });
    await p3.goto(url);
    await p3.waitForFunction(() => document.getElementById("gpu-status").dataset.state !== "loading",
      null, { timeout: 60000 });
    const text = await p3.textContent("#gpu-message");
    assert(/did not offer a GPU adapter/.test(text), `unexpected message: ${text}`);
    await p3.close();
  });
} finally {
  await browser.close();
  server.close();
}

const failed = results.filter(([, e]) => e).length;
console.log(`e2e: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
