// The restless user: the built page driven by a seeded random schedule of a few hundred
// actions (Train and Pause, Reset, New samples, picking and drawing digits, sliders, settings
// and Apply, switching device, Save and Load, loading data), starting in the first second after
// navigation with gaps of 0 to 1.5 s, never waiting for the page to be idle; then Train, and
// training must go on. Fails on any page error, console error, message from wasm (a panic,
// "recursive use of an object", a trap) or "Something went wrong".
//
// The page is served cross-origin isolated (the threaded build), except for the seeds of
// --unisolated-seeds, served as a static host serves it, with service workers kept out (the
// plain build, one thread).
//
//   node restless.mjs [--seeds 1,2,3] [--unisolated-seeds 2] [--devices webgpu,cpu] [--actions 200] [--one-at-a-time]
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { errors } from "playwright-core";
import { digits32, inPageAndWorker, launch, serve, watch, withoutWebGpu } from "./harness.mjs";

const option = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const SEEDS = option("seeds", "1,2,3").split(",").map(Number);
const UNISOLATED = option("unisolated-seeds", "").split(",").filter(Boolean).map(Number);
const DEVICES = option("devices", "webgpu,cpu").split(",");
const ACTIONS = Number(option("actions", 200));
const MAX_GAP_MS = 1500;

// mulberry32: a small seeded generator, so that a failing schedule can be replayed.
function generator(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n) => Math.floor(next() * n), pick: (list) => list[Math.floor(next() * list.length)] };
}

// What a user can do, as [weight, name, act(page, rng, files)]. An action on something the page
// does not show (or a file input it has disabled) is what a user cannot do: `act` returns false.
const SETTINGS = {
  latent: ["2", "8", "20", "0"], // 0: refused next to the field
  hidden: ["400", "128", "256, 128", "64"],
  batch_size: ["32", "64", "128"],
  learning_rate: ["0.001", "0.0005"],
  beta: ["1", "0.5"],
  kl_warmup_steps: ["0", "20", "150"],
};
const CHOICES = {
  kind: ["mlp", "mlp", "mlp", "conv", "hvae", "hvae"],
  likelihood: ["bernoulli", "gaussian", "gaussian_var"],
  latent_kind: ["gaussian", "gaussian", "categorical"],
};

async function click(page, selector, options = {}) {
  const target = page.locator(selector).first();
  if (!(await target.isVisible())) return false;
  // force: no waiting for the page to be ready; a click on a disabled control does nothing,
  // as it does for a person. A control the page hides or replaces between the look and the
  // click (the gallery redrawn with other digits, say) is a click that lands on nothing.
  try {
    await target.click({ force: true, timeout: 10000, ...options });
  } catch (err) {
    if (/Element is not visible|not attached to the DOM/.test(err.message)) return false;
    throw err;
  }
  return true;
}

async function setFiles(page, selector, files) {
  if (await page.locator(selector).isDisabled()) return false;
  await page.setInputFiles(selector, files, { timeout: 10000 });
  return true;
}

const ACTIONS_LIST = [
  [8, "train or pause", (page) => click(page, "#train")],
  [1, "double click train", (page) => click(page, "#train", { clickCount: 2 })],
  [2, "reset", (page) => click(page, "#reset")],
  [3, "new samples", (page) => click(page, "#new-samples")],
  [1, "other digits", (page) => click(page, "#more-digits")],
  [5, "pick a digit", (page, rng) => click(page, `#gallery .digit >> nth=${rng.int(16)}`)],
  [1, "choose slot", (page, rng) => click(page, `input[name="slot"][value="${rng.pick(["a", "b"])}"]`)],
  [2, "choose path", (page, rng) => click(page, `input[name="path"][value="${rng.pick(["linear", "spherical"])}"]`)],
  [3, "scrub", async (page, rng) => {
    const scrub = page.locator("#scrub");
    if (!(await scrub.isVisible())) return false;
    await scrub.fill(String(rng.int(101)), { force: true, timeout: 10000 });
    return true;
  }],
  [2, "draw", async (page, rng) => {
    const box = await page.locator("#pad").boundingBox();
    if (!box) return false;
    await page.mouse.move(box.x + box.width * (0.3 + 0.4 * rng.next()), box.y + box.height * 0.15);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * (0.3 + 0.4 * rng.next()), box.y + box.height * 0.85, { steps: 5 });
    await page.mouse.up();
    return true;
  }],
  [2, "use drawing", (page) => click(page, "#use-drawing")],
  [1, "clear drawing", (page) => click(page, "#clear-pad")],
  [1, "σ of samples", (page) => click(page, "#samples-std")],
  [1, "σ of reconstructions", (page) => click(page, "#recon-std")],
  [2, "keep a group", (page, rng) => click(page, `input[name="keep"][value="${rng.pick(["top", "lower"])}"]`)],
  [2, "draw variations again", (page) => click(page, "#new-variations")],
  [4, "change a setting", async (page, rng, files, device) => {
    if (rng.next() < 0.4) {
      const [field, values] = rng.pick(Object.entries(CHOICES));
      const select = page.locator(`#settings [name="${field}"]`);
      if (!(await select.isVisible())) return false;
      // The hierarchy only where there is no GPU: a step of it takes about 15 s on SwiftShader,
      // and six schedules share two cores.
      const value = rng.pick(values);
      if (value === "hvae" && device !== "cpu") return false;
      await select.selectOption(value, { force: true, timeout: 10000 });
      if (field === "kind") { // small convolutions, so that a step stays short on a software GPU
        const channels = page.locator('#settings [name="channels"]');
        if (await channels.isVisible()) {
          await channels.fill("8, 16", { timeout: 10000 });
          await page.fill('#settings [name="dense"]', "32", { timeout: 10000 });
        }
      }
    } else {
      const [field, values] = rng.pick(Object.entries(SETTINGS));
      const input = page.locator(`#settings [name="${field}"]`);
      if (!(await input.isVisible())) return false;
      await input.fill(rng.pick(values), { force: true, timeout: 10000 });
    }
    return true;
  }],
  [3, "apply", (page) => click(page, "#apply")],
  [2, "switch device", (page) => click(page, "#switch-device")],
  [2, "save", (page) => click(page, "#save")],
  [2, "load weights", async (page, rng, files) => {
    if (!files.saved.length) return false;
    const file = rng.pick(files.saved);
    // Now and then a file cut short: refused with a message, nothing changes.
    const cut = rng.next() < 0.25;
    return setFiles(page, "#load", cut
      ? { name: "cut.safetensors", mimeType: "application/octet-stream", buffer: (await readFile(file)).subarray(0, 3000) }
      : file);
  }],
  [1, "load 32x32 digits", async (page, rng, files) => setFiles(page, "#data-files", files.digits32)],
  [1, "use the bundled digits", (page) => click(page, "#bundled")],
];

// One schedule on one device: resolves to a line of figures, or throws what went wrong.
async function restless(browser, url, device, seed, isolated) {
  const rng = generator(seed * 7919 + (device === "cpu" ? 1 : 0));
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, acceptDownloads: true,
    serviceWorkers: isolated ? "allow" : "block" });
  if (device === "cpu") await inPageAndWorker(context, withoutWebGpu);
  const dir = await mkdtemp(join(tmpdir(), "restless-"));
  const files = { saved: [], digits32: await digits32() };
  const page = await context.newPage();
  const problems = watch(page);
  page.on("download", async (download) => {
    const file = join(dir, `saved-${files.saved.length}.safetensors`);
    await download.saveAs(file);
    files.saved.push(file);
  });
  // "Something went wrong": an error the page did not expect.
  const alerts = () => page.evaluate(() => {
    const alert = document.getElementById("alert");
    return alert && !alert.hidden ? document.getElementById("alert-message").textContent : "";
  });
  // The kinds of model the page had after some action: what the schedule reached.
  const kinds = new Set();
  const noteKind = async () => {
    const kind = await page.evaluate(() => window.vae?.training.trainer?.config().architecture?.kind ?? null).catch(() => null);
    if (kind) kinds.add(kind);
  };
  const log = [];
  const t0 = Date.now();
  try {
    await page.goto(url, { waitUntil: "commit" });
    const total = ACTIONS_LIST.reduce((n, [w]) => n + w, 0);
    let done = 0;
    for (let i = 0; i < ACTIONS; i++) {
      await page.waitForTimeout(i === 0 ? rng.int(1000) : rng.int(MAX_GAP_MS + 1));
      let r = rng.next() * total;
      const [, name, act] = ACTIONS_LIST.find(([w]) => (r -= w) < 0);
      // A control that stays hidden or disabled for the 10 s a step waits (the settings form
      // rewritten under the user's hand by a model that was just replaced, say) is one a person
      // could not use then either; a page that stops responding fails the final check.
      const acted = await act(page, rng, files, device).catch((err) => {
        if (err instanceof errors.TimeoutError) return false;
        throw err;
      });
      if (acted) done += 1;
      log.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${name}${acted ? "" : " (not possible now)"}`);
      const alert = await alerts();
      await noteKind();
      if (/Something went wrong|diverged|stopped/.test(alert)) throw new Error(`after "${name}" the page says: ${alert}`);
      if (problems.length) throw new Error(`after "${name}": ${problems.join(" | ")}`);
    }
    // Then Train (unless the last click already asked for it), and training must go on.
    if ((await page.textContent("#train")) !== "Pause") await page.click("#train", { timeout: 60000 });
    await page.waitForFunction(() => window.vae && window.vae.training.trainer && !window.vae.training.changing(),
      null, { timeout: 300000 }).catch(async () => {
      const state = await page.evaluate(() => {
        const t = window.vae?.training;
        return t && { trainer: !!t.trainer, changing: t.changing(), busy: t.busy(), wanted: t.wanted, running: t.running,
          broken: t.broken, choice: t.choice, device: t.device?.kind(), work: document.getElementById("work-note").textContent,
          status: document.getElementById("gpu-status").textContent };
      }).catch((err) => `unreadable: ${err.message}`);
      throw new Error(`a change of the model did not end in 300 s (models ${[...kinds].join(", ")}): ${JSON.stringify(state)}`);
    });
    const from = Number(await page.textContent("#step"));
    await page.waitForFunction((from) => Number(document.getElementById("step").textContent) >= from + 3,
      from, { timeout: 300000 }).catch(async () => {
      throw new Error(`training did not go on: step ${await page.textContent("#step")} (from ${from}), ` +
        `button "${await page.textContent("#train")}", alert "${await alerts()}"`);
    });
    const to = Number(await page.textContent("#step"));
    const alert = await alerts();
    if (alert) throw new Error(`the page says: ${alert}`);
    if (problems.length) throw new Error(problems.join(" | "));
    await noteKind();
    return `${done} of ${ACTIONS} actions possible when tried, ${files.saved.length} files saved, models ${[...kinds].join(", ")}; ` +
      `then trained from step ${from} to ${to}; ${((Date.now() - t0) / 1000).toFixed(0)} s`;
  } catch (err) {
    console.log(`     seed ${seed} on ${device}, its last actions:\n${log.slice(-15).map((l) => `       ${l}`).join("\n")}`);
    throw err;
  } finally {
    await context.close();
    await rm(dir, { recursive: true, force: true });
  }
}

// Every schedule at once, each in a context of its own (its own storage), as several people
// on one machine: the schedules are about time, not speed, and side by side they take the time
// of one (`--one-at-a-time` for a quiet machine, e.g. to replay a failure).
const servers = { isolated: await serve(), unisolated: await serve({ isolated: false }) };
const browser = await launch();
const runs = DEVICES.flatMap((device) => SEEDS.map((seed) => ({ device, seed, isolated: !UNISOLATED.includes(seed) })));
let passed = 0, failed = 0;
const attempt = async ({ device, seed, isolated }) => {
  const name = `restless user, seed ${seed}, ${device === "cpu" ? "CPU path (no WebGPU)" : "WebGPU"}${isolated ? "" : ", not isolated"}`;
  try {
    const { url } = servers[isolated ? "isolated" : "unisolated"];
    const figures = await restless(browser, url, device, seed, isolated);
    console.log(`ok   ${name}: ${figures}`);
    passed += 1;
  } catch (err) {
    console.log(`FAIL ${name}: ${err.message}`);
    failed += 1;
  }
};
try {
  if (process.argv.includes("--one-at-a-time")) {
    for (const run of runs) await attempt(run);
  } else {
    await Promise.all(runs.map(attempt));
  }
} finally {
  await browser.close();
  for (const { server } of Object.values(servers)) server.close();
}
console.log(`restless: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
