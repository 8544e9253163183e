// End-to-end: serves the built site (../dist) on localhost, opens it in headless Chromium with
// WebGPU (SwiftShader), and checks what a user would see. Screenshots go to ../artifacts/.
// The server isolates the page, so the threaded build runs; `PLAIN=1 node e2e.mjs` runs every
// check on the plain build instead, as a static host without the headers serves it.
import { mkdir, readFile } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ARTIFACTS, digits32, FIRST_SAMPLES_MAX_MS, firstSamplesMs, greyLevels, inPageAndWorker, launch, PLAIN, ready as readyOn, ROOT, serve, storedStep, watch, withoutWebGpu } from "./harness.mjs";

const PYTHON = fileURLToPath(new URL("../.venv/bin/python", import.meta.url));
const CHECK_SAFETENSORS = fileURLToPath(new URL("../scripts/check_safetensors.py", import.meta.url));

const results = [];
// E2E_ONLY=regex runs only the checks whose names match (those that build on earlier ones may
// then fail): for working on one check.
async function check(name, fn) {
  if (process.env.E2E_ONLY && !new RegExp(process.env.E2E_ONLY).test(name)) return;
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

const { server, url } = await serve();
const browser = await launch();
await mkdir(ARTIFACTS, { recursive: true });
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  const problems = watch(page);

  const idle = () => readyOn(page);
  const pixels = (id) => greyLevels(page, id);
  // Clears every canvas, so that what a check reads afterwards was drawn after this (a view of
  // one preset cannot pass on the pixels of the one before).
  const blankViews = () => page.evaluate(() => {
    for (const c of document.querySelectorAll("canvas")) c.getContext("2d").clearRect(0, 0, c.width, c.height);
  });
  // A view drawn since blankViews: digits have some ink; the scatter (drawn on white) has
  // coloured points, not just its background and axes.
  const drawn = async (id) => id === "scatter"
    ? page.evaluate(() => {
      const c = document.getElementById("scatter");
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let points = 0;
      for (let i = 0; i < d.length; i += 4) points += d[i] !== d[i + 1] || d[i + 1] !== d[i + 2];
      return points > 50;
    })
    : await page.evaluate((id) => document.getElementById(id).dataset.drawn !== undefined, id) && (await pixels(id)).some((v) => v > 0);
  // The mean absolute difference of two grey-level arrays, in levels.
  const diff = (a, b) => a.reduce((s, v, i) => s + Math.abs(v - b[i]), 0) / a.length;
  const lossValue = async () => parseFloat(await page.textContent("#loss"));
  const message = () => page.textContent("#data-message");
  // Trains until the page's step count reaches `steps`, then pauses and waits for the views.
  const trainTo = async (steps, timeout = 120000) => {
    await page.click("#train");
    await page.waitForFunction((steps) => Number(document.getElementById("step").textContent) >= steps, steps, { timeout });
    await page.click("#train");
    await idle();
  };
  // Loads a weights file with Load weights and waits for the page's verdict (the message is
  // cleared first, so an earlier load's message cannot pass for this one's); returns it.
  const loadWeights = async (file) => {
    await page.evaluate(() => { document.getElementById("data-message").textContent = ""; });
    await page.setInputFiles("#load", file);
    await page.waitForFunction(() => /was not loaded|Loaded/.test(document.getElementById("data-message").textContent));
    await idle();
    return message();
  };
  // Gives the page dataset files and waits for its verdict, the message cleared first for the same
  // reason as loadWeights: a corrupt checkpoint's "was not loaded" must not pass for the data's.
  const loadData = async (p, files) => {
    await p.evaluate(() => { document.getElementById("data-message").textContent = ""; });
    await p.setInputFiles("#data-files", files);
    await p.waitForFunction(() => /Loaded|not loaded/.test(document.getElementById("data-message").textContent));
    return p.textContent("#data-message");
  };
  // Clicks Save weights, keeps the file as artifacts/`name`, and reads it with Python's
  // safetensors as a PyTorch user would: { file, read }.
  const saveWeights = async (name) => {
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#save")]);
    const file = join(ARTIFACTS, name);
    await download.saveAs(file);
    return { file, read: JSON.parse(execFileSync(PYTHON, [CHECK_SAFETENSORS, file]).toString()) };
  };

  await check("page loads from a sub-path, reports the adapter and draws samples within 3 s", async () => {
    const t0 = Date.now();
    // ?device=gpu: these checks train on WebGPU (by itself the page would time both devices at
    // the first Train and, on a software adapter, train on the CPU; checked on its own below).
    await page.goto(`${url}?device=gpu`);
    const ms = await firstSamplesMs(page, t0);
    console.log(`first_samples_ms ${ms} device webgpu`);
    const state = await page.getAttribute("#gpu-status", "data-state");
    const text = await page.textContent("#gpu-message");
    console.log(`     page says: ${text}`);
    assert(state === "ready", `expected state "ready", got "${state}": ${text}`);
    assert(/WebGPU adapter: \S/.test(text), `no adapter named: ${text}`);
    assert(ms <= FIRST_SAMPLES_MAX_MS, `the first samples took ${ms} ms on WebGPU`);
    const grid = await pixels("samples");
    assert(grid.length === 224 * 224, `sample grid is ${grid.length} pixels`);
    await idle();
    assert(await page.isHidden("#work-note"), `once idle, the page still says: ${await page.textContent("#work-note")}`);
  });

  // Tick labels fall at round numbers: evenly spaced by 1, 2 or 5 x 10^n, starting at 0.
  const roundTicks = (labels, axis) => {
    const v = labels.map(Number);
    assert(v.length >= 3, `${axis} axis has ${v.length} ticks: ${labels.join(", ")}`);
    assert(v[0] === 0, `${axis} axis does not start at 0: ${labels.join(", ")}`);
    const step = v[1] - v[0];
    const mantissa = step / 10 ** Math.floor(Math.log10(step) + 1e-9);
    assert([1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-6), `${axis} ticks step by ${step}: ${labels.join(", ")}`);
    v.forEach((t, i) => assert(Math.abs(t - i * step) < step * 1e-6, `${axis} tick ${labels[i]} is not a multiple of ${step}`));
  };

  await check("controls have accessible names and images text alternatives", async () => {
    const missing = await page.evaluate(() => {
      const out = [];
      for (const b of document.querySelectorAll("button:not([hidden])")) {
        if (!(b.getAttribute("aria-label") || b.textContent.trim())) out.push(b.outerHTML.slice(0, 60));
      }
      for (const i of document.querySelectorAll("input, select")) {
        if (!i.closest("label") && !document.querySelector(`label[for="${i.id}"]`)) out.push(i.outerHTML.slice(0, 60));
      }
      for (const c of document.querySelectorAll("canvas")) {
        if (!c.closest("button") && !c.getAttribute("aria-label")) out.push(c.outerHTML.slice(0, 60));
      }
      return out;
    });
    assert(missing.length === 0, `unnamed: ${missing.join(" | ")}`);
  });

  let trainedSamples;
  await check("Train lowers the loss and sharpens the sample grid", async () => {
    const before = await pixels("samples");
    await page.click("#train");
    assert((await page.textContent("#train")) === "Pause", "the Train button did not become Pause");
    await page.waitForFunction(() => Number(document.getElementById("step").textContent) > 0, null, { timeout: 60000 });
    const first = await lossValue();
    await page.waitForFunction((first) => parseFloat(document.getElementById("loss").textContent) < 0.75 * first
      && Number(document.getElementById("step").textContent) >= 30, first, { timeout: 300000 });
    const steps = await page.textContent("#step"), rate = await page.textContent("#rate");
    await page.click("#train");
    await idle();
    const last = await lossValue();
    console.log(`     loss ${first.toFixed(1)} -> ${last.toFixed(1)} after ${steps} steps; samples/s ${rate}`);
    trainedSamples = await pixels("samples");
    const changed = diff(before, trainedSamples);
    assert(changed > 5, `the sample grid barely changed (mean difference ${changed.toFixed(2)} levels)`);
    await page.screenshot({ path: join(ARTIFACTS, "trained.png"), fullPage: true });
  });

  await check("the loss chart's tick labels are round numbers", async () => {
    const trained = await page.evaluate(() => window.vae.chart.tickLabels);
    console.log(`     y: ${trained.y.join(" ")} | x: ${trained.x.join(" ")}`);
    roundTicks(trained.y, "y");
    roundTicks(trained.x, "x");
    // The ranges of the report that asked for this (y up to about 250, x to 3.8 epochs), and others.
    for (const [loss, epochs] of [[238, 3.8], [545, 0.37], [118, 10], [90, 27]]) {
      const labels = await page.evaluate(async ([loss, epochs]) => {
        const { LossChart } = await import("./views.js");
        const chart = new LossChart(document.createElement("canvas"), document.createElement("div"));
        for (let i = 0; i <= 20; i++) {
          chart.addTrain({ epoch: (epochs * i) / 20, loss, reconstruction: loss * 0.8, kl: loss * 0.2 });
        }
        return chart.tickLabels;
      }, [loss, epochs]);
      roundTicks(labels.y, `y (${loss})`);
      roundTicks(labels.x, `x (${epochs} epochs)`);
      assert(Number(labels.y[labels.y.length - 1]) >= loss, `y axis ends below the data: ${labels.y.join(" ")}`);
    }
  });

  await check("interpolation strip ends at the reconstructions of the two picked digits", async () => {
    await page.check('input[name="slot"][value="a"]');
    await page.click("#gallery .digit >> nth=3");
    await idle();
    await page.click("#gallery .digit >> nth=7");
    await idle();
    const strip = await pixels("strip");
    const cellOf = (row, k) => Array.from({ length: 28 * 28 }, (_, i) => row[Math.floor(i / 28) * 280 + k * 28 + (i % 28)]);
    const cell = (k) => cellOf(strip, k);
    const [ra, rb] = [await pixels("slot-a-recon"), await pixels("slot-b-recon")];
    const [ea, eb] = [diff(cell(0), ra), diff(cell(9), rb)];
    assert(ea <= 1 && eb <= 1, `endpoints differ from the reconstructions by ${ea.toFixed(2)} and ${eb.toFixed(2)} levels`);
    assert(diff(ra, rb) > 10, "the two picked digits reconstruct to nearly the same image");
    await page.check('input[name="path"][value="spherical"]');
    await idle();
    const arc = await pixels("strip");
    assert(diff(cellOf(arc, 0), ra) <= 1 && diff(cellOf(arc, 9), rb) <= 1, "the spherical path does not run from A to B");
    assert(diff(arc, strip) > 0, "the spherical path is the same as the linear one");
  });

  await check("a drawn digit can be picked", async () => {
    const box = await page.locator("#pad").boundingBox();
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.15);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.52, box.y + box.height * 0.85, { steps: 10 });
    await page.mouse.up();
    await page.click("#use-drawing");
    await idle();
    const drawn = await pixels("slot-b");
    assert(drawn.some((v) => v > 128), "the drawing did not reach digit B");
    const label = await page.getAttribute("#slot-b", "aria-label");
    assert(/drawing/.test(label), `digit B is labelled "${label}"`);
  });

  await check("weights save to .safetensors (readable by Python) and load back", async () => {
    const { file, read } = await saveWeights("weights.safetensors");
    const config = JSON.parse(read.metadata.config);
    assert(config.latent === 20 && config.encoder[0].out === 400, `saved config: ${read.metadata.config}`);
    assert(JSON.stringify(read.tensors["encoder.0.weight"].shape) === "[400,784]", "encoder.0.weight is not [400, 784]");
    // nn.Sequential(Linear, ReLU, Linear): the output layer is module 2.
    assert(JSON.stringify(read.tensors["decoder.2.weight"].shape) === "[784,400]", "decoder.2.weight is not [784, 400]");
    await page.click("#reset");
    await idle();
    assert(diff(await pixels("samples"), trainedSamples) > 5, "Reset did not change the samples");
    await loadWeights(file);
    assert(/Loaded weights.safetensors \(saved at step [1-9]\d*\)/.test(await message()), await message());
    assert(Number(await page.textContent("#step")) > 0, "the step count did not continue from the saved step");
    const restored = diff(await pixels("samples"), trainedSamples);
    assert(restored < 0.01, `the loaded weights draw different samples (${restored.toFixed(3)} levels)`);
  });

  await check("a file saved with Adam's state resumes training exactly", async () => {
    // The model was just loaded without Adam's state: give Adam a few steps of history.
    await trainTo(Number(await page.textContent("#step")) + 5);
    await page.check("#save-optimizer");
    const { file, read } = await saveWeights("resume.safetensors");
    await page.uncheck("#save-optimizer");
    assert(JSON.stringify(read.tensors["optimizer.exp_avg_sq.encoder.0.weight"].shape) === "[400,784]", "no second moments in the file");
    const saved = Number(read.metadata.step);
    assert(saved > 0 && Number(read.metadata.optimizer_step) > 0, `steps in the file: ${JSON.stringify(read.metadata)}`);
    // Train on with the button; the weights reached are kept in the page.
    await trainTo(saved + 7);
    const reached = Number(await page.textContent("#step"));
    const weightsAfter = (steps, keep) => page.evaluate(async ([steps, keep]) => {
      const t = window.vae.training.trainer;
      if (steps) await t.train(steps);
      const bytes = await t.save(0, false);
      const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
      const weights = new Float32Array(bytes.slice(8 + n).buffer);
      if (keep) { window.straight = weights; return 0; }
      let differ = 0;
      for (let i = 0; i < weights.length; i++) differ += !(Math.abs(weights[i] - window.straight[i]) <= 1e-6);
      return weights.length === window.straight.length ? differ / weights.length : 1;
    }, [steps, keep]);
    await weightsAfter(0, true);
    // Loaded, the file resumes at its step; the same number of steps from there (counted out
    // here, since the button's submissions vary in size) must reach the same weights.
    await loadWeights(file);
    assert(/with Adam's state\); training resumes exactly/.test(await message()), await message());
    assert(Number(await page.textContent("#step")) === saved, `the step shows ${await page.textContent("#step")}, saved at ${saved}`);
    // Natively the two are identical to the bit. Chromium's SwiftShader is not bit-reproducible
    // from run to run (two runs from the same file differ in about 0.02% of the weights, those
    // whose gradients are within rounding of zero), so allow 0.2%; without Adam's state nearly
    // every weight differs, since Adam's first steps move each by about the learning rate.
    const differ = await weightsAfter(reached - saved, false);
    console.log(`     after ${reached - saved} more steps, ${(100 * differ).toFixed(3)}% of the weights differ from training straight on`);
    assert(differ <= 0.002, `after the same ${reached - saved} steps, ${(100 * differ).toFixed(3)}% of the weights differ from training straight on`);
  });

  await check("a corrupt checkpoint is refused and changes nothing", async () => {
    const before = await pixels("samples");
    const good = await readFile(join(ARTIFACTS, "weights.safetensors"));
    await loadWeights({ name: "cut.safetensors", mimeType: "application/octet-stream", buffer: good.subarray(0, 5000) });
    console.log(`     page says: ${await message()}`);
    assert(/truncated/.test(await message()), await message());
    await idle();
    assert(diff(await pixels("samples"), before) === 0, "the samples changed");
  });

  await check("a malformed IDX file gets a clear message and leaves data and model alone", async () => {
    const before = await pixels("samples");
    const summary = await page.textContent("#data-summary");
    const labels = await readFile(join(ROOT, "data/t10k-labels-idx1-ubyte.gz"));
    const text = await loadData(page, [
      { name: "images-idx3-ubyte", mimeType: "application/octet-stream", buffer: Buffer.from([0, 0, 8, 3, 0, 0, 0, 9, 0, 0, 0, 28, 0, 0, 0, 28, 1, 2, 3]) },
      { name: "labels-idx1-ubyte.gz", mimeType: "application/gzip", buffer: labels },
    ]);
    console.log(`     page says: ${text}`);
    assert(/images-idx3-ubyte: .*header describes/.test(text), `unclear message: ${text}`);
    assert((await page.textContent("#data-summary")) === summary, "the dataset summary changed");
    assert(diff(await pixels("samples"), before) === 0, "the samples changed");
  });

  await check("images of another size (32x32) train and draw in every view", async () => {
    await blankViews();
    await loadData(page, await digits32());
    await idle();
    assert(/Loaded 900 training and 100 test images/.test(await message()), await message());
    assert(/of 32x32 pixels/.test(await page.textContent("#data-summary")), await page.textContent("#data-summary"));
    assert(/^Model 1024 → linear 400/.test(await page.textContent("#model-summary")), await page.textContent("#model-summary"));
    await trainTo(5);
    const size = (id) => page.evaluate((id) => [document.getElementById(id).width, document.getElementById(id).height], id);
    const sizes = { samples: await size("samples"), recon: await size("recon"), strip: await size("strip"), slot: await size("slot-a-recon"),
      gallery: await page.evaluate(() => document.querySelector("#gallery canvas").width) };
    console.log(`     canvas sizes: ${JSON.stringify(sizes)}`);
    assert(JSON.stringify(sizes) === JSON.stringify({ samples: [256, 256], recon: [320, 64], strip: [320, 32], slot: [32, 32], gallery: 32 }),
      "the views are not drawn at 32x32 per digit");
    for (const id of ["samples", "recon", "strip", "slot-a-recon", "scatter"]) assert(await drawn(id), `${id} is blank`);
    // The recon canvas's top row is the test digits themselves: padded, so its border is black.
    const recon = await pixels("recon");
    assert(recon.slice(0, 2 * 320).every((v) => v === 0) && recon.slice(0, 32 * 320).some((v) => v > 0), "the test digits are not drawn as 32x32 images");
    await page.click("#clear-pad");
    const pad = await page.locator("#pad").boundingBox();
    await page.mouse.move(pad.x + pad.width / 2, pad.y + pad.height * 0.2);
    await page.mouse.down();
    await page.mouse.move(pad.x + pad.width / 2, pad.y + pad.height * 0.8, { steps: 8 });
    await page.mouse.up();
    await page.click("#use-drawing");
    await idle();
    const slot = /drawing/.test(await page.getAttribute("#slot-a", "aria-label")) ? "slot-a" : "slot-b";
    assert((await size(slot)).join() === "32,32" && (await pixels(slot)).some((v) => v > 128), "the drawing is not a 32x32 digit");
    await page.click("#bundled");
    await page.waitForFunction(() => /Using the bundled digits/.test(document.getElementById("data-message").textContent));
    await idle();
    assert(/^Model 784 → linear 400/.test(await page.textContent("#model-summary")), await page.textContent("#model-summary"));
  });

  await check("settings are validated next to the field and applied on reset", async () => {
    await page.fill('#settings [name="latent"]', "0");
    await page.click("#apply");
    const error = await page.textContent("#latent-error");
    assert(/1\.\.=64/.test(error), `latent error: "${error}"`);
    assert((await page.getAttribute('#settings [name="latent"]', "aria-invalid")) === "true", "latent not marked invalid");
    await page.fill('#settings [name="latent"]', "2");
    await page.click("#apply");
    await idle();
    assert(/→ z2 →/.test(await page.textContent("#model-summary")), await page.textContent("#model-summary"));
    assert(!(await page.isHidden("#manifold")), "no manifold for a 2-D latent space");
    assert((await pixels("manifold")).some((v) => v > 0), "the manifold is blank");
    assert((await page.locator("#traversal .trow").count()) === 2, "expected one traversal row per dimension");
  });

  await check("a setting typed wrong while the page starts, then Train: the reference model is made and trains", async () => {
    // Found by the restless user: the first model was made from the form as it was, and a
    // half-typed setting left the page with no model at all ("The bundled digits could not be
    // loaded: latent: must be 1..=64, got 0"), Train pressed meaning nothing.
    const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
    const p = await context.newPage();
    const errors = watch(p);
    try {
      await p.goto(`${url}?device=cpu`, { waitUntil: "commit" });
      await p.locator('#settings [name="latent"]').fill("0", { timeout: 10000 });
      await p.click("#train");
      await p.waitForFunction(() => Number(document.getElementById("step").textContent) >= 3, null, { timeout: 120000 });
      const summary = await p.textContent("#model-summary");
      assert(/^Model 784 → linear 400 relu → z20/.test(summary), summary);
      assert(await p.inputValue('#settings [name="latent"]') === "20", `the form shows latent ${await p.inputValue('#settings [name="latent"]')}, not what trains`);
      assert(/Training on the bundled/.test(await p.textContent("#data-summary")), await p.textContent("#data-summary"));
      assert(errors.length === 0, errors.join(" | "));
    } finally {
      await context.close();
    }
  });

  await check("the convolutional preset trains, draws every view and round-trips its weights", async () => {
    await page.selectOption('#settings [name="kind"]', "conv");
    assert(await page.isVisible('#settings [name="channels"]'), "no channel field for the conv architecture");
    assert(await page.isHidden('#settings [name="hidden"]'), "the MLP's hidden sizes are still shown");
    await page.fill('#settings [name="channels"]', "32, 0");
    await page.click("#apply");
    assert(/whole numbers/.test(await page.textContent("#encoder-error")), await page.textContent("#encoder-error"));
    await page.fill('#settings [name="channels"]', "32, 64");
    await page.fill('#settings [name="latent"]', "20");
    await blankViews();
    await page.click("#apply");
    await idle();
    const summary = await page.textContent("#model-summary");
    console.log(`     ${summary}`);
    assert(/conv2d 32 k4 s2 p1 relu → conv2d 64 k4 s2 p1 relu → flatten → linear 256 relu → z20/.test(summary), summary);
    assert(/1,691,369 parameters/.test(summary), summary);
    const before = await pixels("samples");
    await trainTo(3, 600000);
    const after = await pixels("samples");
    const changed = diff(before, after);
    console.log(`     ${await page.textContent("#step")} steps; samples/s ${await page.textContent("#rate")}; samples moved ${changed.toFixed(1)} levels`);
    assert(changed > 1, `the conv model's samples did not change (${changed.toFixed(2)} levels)`);
    for (const id of ["strip", "slot-a-recon", "scatter"]) assert(await drawn(id), `${id} is blank`);
    assert((await page.locator("#traversal .trow").count()) > 0, "no traversal rows");
    const { file, read } = await saveWeights("conv.safetensors");
    assert(JSON.stringify(read.tensors["encoder.0.weight"].shape) === "[32,1,4,4]", "Conv2d weight is not [out, in, k, k]");
    assert(JSON.stringify(read.tensors["decoder.5.weight"].shape) === "[64,32,4,4]", "ConvTranspose2d weight is not [in, out, k, k]");
    assert(/conv_transpose2d/.test(read.metadata.layers), `layers: ${read.metadata.layers}`);
    await page.click("#reset");
    await idle();
    await loadWeights(file);
    assert(/Loaded conv.safetensors/.test(await message()), await message());
    const restored = diff(await pixels("samples"), after);
    assert(restored < 0.01, `the loaded conv weights draw different samples (${restored.toFixed(3)} levels)`);
    // Back to the MLP for the checks that follow.
    await page.selectOption('#settings [name="kind"]', "mlp");
    await page.click("#apply");
    await idle();
    assert(/^Model 784 → linear 400/.test(await page.textContent("#model-summary")), await page.textContent("#model-summary"));
  });

  await check("the hierarchy of latents trains, charts each group's KL, varies a digit keeping either group, and round-trips its weights", async () => {
    const field = (name) => `#settings [name="${name}"]`;
    await page.selectOption(field("kind"), "hvae");
    assert(await page.isVisible(field("kl_warmup_steps")), "no KL warm-up field for the hierarchy");
    for (const name of ["latent", "likelihood", "beta", "hidden"]) assert(await page.isHidden(field(name)), `the hierarchy shows the ${name} field`);
    assert(await page.inputValue(field("learning_rate")) === "0.002", `learning rate ${await page.inputValue(field("learning_rate"))}, not the hierarchy's 0.002`);
    await page.fill(field("kl_warmup_steps"), "-1");
    await page.click("#apply");
    assert(/kl_warmup_steps|invalid value/.test(await page.textContent("#settings-error")), `no error for a negative warm-up: "${await page.textContent("#settings-error")}"`);
    await page.fill(field("kl_warmup_steps"), "20");
    await blankViews();
    await page.click("#apply");
    await idle();
    const summary = await page.textContent("#model-summary");
    console.log(`     ${summary}`);
    assert(/1x28x28 → graph of \d+ nodes → z1 20 → z2 8x7x7 → 1x28x28/.test(summary), summary);
    assert(/1,190,601 parameters/.test(summary), summary);
    assert(await page.isVisible("#variations"), "no variations view for the hierarchy");
    assert(/KL z1.*KL z2/.test(await page.textContent("#legend-groups")), `legend: ${await page.textContent("#legend-groups")}`);
    for (const id of ["interp-caption", "traversal-caption"]) {
      assert(/the top group's, z1; each is decoded with z2/.test(await page.textContent(`#${id}`)), `${id}: ${await page.textContent(`#${id}`)}`);
    }
    // (Not the scatter yet: the posterior's heads start at zero, so every digit sits at one point.)
    for (const id of ["samples", "recon", "variations", "strip"]) assert(await drawn(id), `${id} is blank before training`);
    // Drawn on WebGPU; trained on the CPU path, the faster device for this model here (a step
    // takes about 15 s on SwiftShader): the model moves there as a user would move it.
    const onDevice = (kind) => page.waitForFunction((kind) => window.vae.training.device.kind() === kind, kind);
    await page.click("#switch-device");
    await onDevice("cpu");
    await idle();
    const before = await pixels("samples");
    await trainTo(3, 600000);
    const after = await pixels("samples");
    const changed = diff(before, after);
    console.log(`     ${await page.textContent("#step")} steps on the ${await page.evaluate(() => window.vae.training.device.kind())}; loss ${await page.textContent("#loss")}; samples moved ${changed.toFixed(1)} levels`);
    assert(changed > 1, `the hierarchy's samples did not change (${changed.toFixed(2)} levels)`);
    assert(await drawn("scatter"), "the scatter of the top group's codes is blank");
    assert(/KL z1 [\d.]+ \+ KL z2 [\d.]+/.test(await page.textContent("#loss")), `the loss line has no KL per group: ${await page.textContent("#loss")}`);
    const point = await page.evaluate(() => window.vae.chart.train.at(-1));
    assert(point.klGroups?.length === 2 && Math.abs(point.klGroups[0] + point.klGroups[1] - point.kl) < 1e-3 * Math.max(1, point.kl),
      `the chart's last point has no KL per group adding up to the KL: ${JSON.stringify(point)}`);
    // Six test digits, each followed by eight variations: the digit itself in the first column,
    // the variations differing from each other, and keeping the other group giving others.
    const keepTop = await pixels("variations");
    const cell = (levels, row, col) => Array.from({ length: 28 }, (_, y) => levels.slice((row * 28 + y) * 252 + col * 28, (row * 28 + y) * 252 + col * 28 + 28)).flat();
    const spread = diff(cell(keepTop, 0, 1), cell(keepTop, 0, 2));
    assert(spread > 0.1, `two variations of a digit keeping the top group are the same (${spread.toFixed(3)} levels apart)`);
    await page.check('input[name="keep"][value="lower"]');
    await page.waitForFunction(() => document.getElementById("variations").dataset.keep === "lower");
    await idle();
    const keepLower = await pixels("variations");
    assert(diff(cell(keepTop, 0, 0), cell(keepLower, 0, 0)) === 0, "the first column is not the test digit in both views");
    const other = diff(keepTop, keepLower);
    assert(other > 0.1, `keeping the lower group draws what keeping the top group drew (${other.toFixed(3)} levels apart)`);
    await page.click("#new-variations");
    await page.waitForFunction(() => window.vae.view.variationSeed === 2);
    await idle();
    const again = diff(keepLower, await pixels("variations"));
    console.log(`     variations: two of a digit ${spread.toFixed(1)} levels apart, keep top vs keep lower ${other.toFixed(1)}, drawn again ${again.toFixed(1)}`);
    assert(again > 0.1, `Draw again drew the same variations (${again.toFixed(3)} levels apart)`);
    const { file, read } = await saveWeights("hvae.safetensors");
    assert(JSON.stringify(read.tensors["encoder.stem.weight"].shape) === "[32,1,4,4]", "the stem is not [out, in, k, k]");
    assert(JSON.stringify(read.tensors["q1.weight"].shape) === "[40,256]", "the top group's posterior head is not [2 x 20, 256]");
    assert(JSON.parse(read.metadata.graph).schedule.kl_warmup_steps === 20, `graph metadata: ${read.metadata.graph?.slice(0, 200)}`);
    await page.selectOption(field("kind"), "mlp");
    await page.click("#apply");
    await idle();
    await loadWeights(file);
    assert(/Loaded hvae.safetensors/.test(await message()), await message());
    const restored = diff(await pixels("samples"), after);
    assert(restored < 0.01, `the loaded hierarchy draws different samples (${restored.toFixed(3)} levels)`);
    assert(await page.inputValue(field("kind")) === "hvae" && await page.inputValue(field("kl_warmup_steps")) === "20", "the settings do not show the loaded hierarchy");
    assert(await page.isVisible("#variations"), "no variations view for the loaded hierarchy");
    // Back to the MLP for the checks that follow.
    await page.selectOption(field("kind"), "mlp");
    assert(await page.inputValue(field("learning_rate")) === "0.001", `learning rate ${await page.inputValue(field("learning_rate"))} after leaving the hierarchy`);
    await page.click("#apply");
    await idle();
    assert(await page.isHidden("#variations-section"), "the MLP shows the hierarchy's variations");
    assert(/^Model 784 → linear 400/.test(await page.textContent("#model-summary")), await page.textContent("#model-summary"));
    await page.click("#switch-device");
    await onDevice("gpu");
    await idle();
  });

  await check("the learned-variance decoder trains, shows its per-pixel σ and round-trips its weights", async () => {
    const likelihood = '#settings [name="likelihood"]';
    await page.selectOption(likelihood, "gaussian_var");
    assert(await page.isVisible('#settings [name="variance_floor"]'), "no variance floor field");
    assert(await page.isHidden('#settings [name="sigma"]'), "the fixed Gaussian's σ is still shown");
    await page.fill('#settings [name="variance_floor"]', "0");
    await page.click("#apply");
    assert(/variance floor must be in/.test(await page.textContent("#likelihood-error")), await page.textContent("#likelihood-error"));
    await page.fill('#settings [name="variance_floor"]', "0.001");
    await blankViews();
    await page.click("#apply");
    await idle();
    const summary = await page.textContent("#model-summary");
    assert(/linear 400 relu → linear 1568/.test(summary), `no mean and log-variance per pixel: ${summary}`);
    const before = await pixels("samples");
    await trainTo(20, 300000);
    const means = await pixels("samples");
    assert(diff(before, means) > 1, "the samples did not change");
    await page.check("#samples-std");
    await idle();
    const std = await pixels("samples");
    assert(std.some((v) => v > 0) && diff(std, means) > 5, "the σ image is blank or the same as the means");
    assert(/own standard deviation/.test(await page.textContent("#samples-std-caption")), await page.textContent("#samples-std-caption"));
    await page.check("#recon-std");
    await idle();
    const recon = await page.evaluate(() => document.getElementById("recon").height);
    assert(recon === 3 * 28, `the reconstructions have no σ row (canvas ${recon} px high)`);
    await page.screenshot({ path: join(ARTIFACTS, "gauss-var.png"), fullPage: true });
    const { file, read } = await saveWeights("gauss-var.safetensors");
    // One output layer of 2 x 784: torch.chunk(out, 2, dim=1) gives the means' logits and the log-variances.
    assert(JSON.stringify(read.tensors["decoder.2.weight"].shape) === "[1568,400]", "decoder.2.weight is not [1568, 400]");
    assert(JSON.parse(read.metadata.config).likelihood.kind === "gaussian_var", read.metadata.config);
    await page.selectOption(likelihood, "bernoulli");
    await page.click("#apply");
    await idle();
    await loadWeights(file);
    assert(/Loaded gauss-var.safetensors/.test(await message()), await message());
    assert((await page.inputValue(likelihood)) === "gaussian_var", "the settings do not show the loaded likelihood");
    assert(diff(await pixels("samples"), std) < 0.01, "the loaded weights draw different σ images");
    await page.uncheck("#samples-std");
    await page.uncheck("#recon-std");
    await idle();
    assert(diff(await pixels("samples"), means) < 0.01, "the loaded weights draw different samples");
    // Back to the reference for the checks that follow.
    await page.selectOption(likelihood, "bernoulli");
    await page.click("#apply");
    await idle();
  });

  await check("categorical latents train, every view adapts, and the weights round-trip", async () => {
    const kind = '#settings [name="latent_kind"]';
    await page.selectOption(kind, "categorical");
    assert(await page.isVisible('#settings [name="tau_floor"]'), "no temperature schedule fields");
    await page.fill('#settings [name="classes"]', "1");
    await page.click("#apply");
    assert(/classes must be 2..=64/.test(await page.textContent("#latent_type-error")), await page.textContent("#latent_type-error"));
    await page.fill('#settings [name="classes"]', "10");
    await blankViews();
    await page.click("#apply");
    await idle();
    const summary = await page.textContent("#model-summary");
    assert(/→ z20x10 categorical → linear 400 relu/.test(summary), summary);
    assert((await page.textContent("#legend-loss")) === "loss (relaxed)" && (await page.textContent("#legend-test")) === "test −ELBO (discrete)",
      "the chart does not say which figure is relaxed and which discrete");
    assert(await page.isHidden("#spherical-choice"), "slerp is offered for class probabilities");
    assert(/one-hot/.test(await page.textContent("#samples-caption")), await page.textContent("#samples-caption"));
    const before = await pixels("samples");
    await trainTo(20, 300000);
    const after = await pixels("samples");
    assert(diff(before, after) > 1, "the samples did not change");
    for (const id of ["strip", "slot-a-recon", "scatter"]) assert(await drawn(id), `${id} is blank`);
    const rows = await page.locator("#traversal .trow").count();
    const width = await page.evaluate(() => document.querySelector("#traversal .trow canvas").width);
    assert(rows === 20 && width === 10 * 28, `expected 20 traversal rows of 10 classes, got ${rows} of ${width / 28}`);
    assert(/^v\d+ · KL/.test(await page.textContent("#traversal .trow span")), await page.textContent("#traversal .trow span"));
    assert(/most likely class/.test(await page.textContent("#map-caption")), await page.textContent("#map-caption"));
    await page.screenshot({ path: join(ARTIFACTS, "categorical.png"), fullPage: true });
    const { file, read } = await saveWeights("categorical.safetensors");
    assert(JSON.stringify(read.tensors["logits.weight"].shape) === "[200,400]", "logits.weight is not [200, 400]");
    assert(JSON.stringify(read.tensors["decoder.0.weight"].shape) === "[400,200]", "decoder.0.weight is not [400, 200]");
    await page.selectOption(kind, "gaussian");
    await page.click("#apply");
    await idle();
    await loadWeights(file);
    assert(/Loaded categorical.safetensors/.test(await message()), await message());
    assert((await page.inputValue(kind)) === "categorical", "the settings do not show the loaded latent type");
    assert(diff(await pixels("samples"), after) < 0.01, "the loaded weights draw different samples");
    await page.selectOption(kind, "gaussian");
    await page.click("#apply");
    await idle();
    assert((await page.textContent("#legend-test")) === "test −ELBO", "the legend kept the categorical labels");
  });

  await check("the page fits a phone's width", async () => {
    await page.setViewportSize({ width: 375, height: 800 });
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    await page.screenshot({ path: join(ARTIFACTS, "phone.png"), fullPage: true });
    await page.setViewportSize({ width: 1100, height: 800 });
    assert(width <= 376, `the page is ${width} px wide at 375 px`);
  });

  await check("a lost device is reported and training restarts from the kept weights", async () => {
    await page.click("#train");
    await page.waitForFunction(() => Number(document.getElementById("step").textContent) > 2, null, { timeout: 120000 });
    await page.click("#train"); // pausing keeps a copy of the weights
    await idle();
    const kept = await pixels("samples");
    await page.evaluate(() => window.vae.loseDevice());
    await page.click("#train");
    await page.waitForFunction(() => !document.getElementById("alert").hidden, null, { timeout: 60000 });
    const text = await page.textContent("#alert-message");
    console.log(`     page says: ${text}`);
    assert(/device was lost/.test(text) && /weights from step \d+ are kept/.test(text), text);
    await page.click("#alert-action");
    await page.waitForFunction(() => document.getElementById("gpu-status").dataset.state === "ready"
      && !document.getElementById("train").disabled, null, { timeout: 60000 });
    await idle();
    const restored = diff(await pixels("samples"), kept);
    assert(restored < 0.01, `the restarted model draws different samples (${restored.toFixed(3)} levels)`);
    const at = Number(await page.textContent("#step"));
    await page.click("#train");
    await page.waitForFunction((at) => Number(document.getElementById("step").textContent) > at, at, { timeout: 120000 });
    await page.click("#train");
    await idle();
  });

  await check("the model moves to the CPU and back: same step, same samples, the chart's history kept, training goes on", async () => {
    const status = async () => [await page.getAttribute("#gpu-status", "data-state"), await page.textContent("#gpu-message")];
    const step = async () => Number(await page.textContent("#step"));
    const before = { step: await step(), samples: await pixels("samples"), points: await page.evaluate(() => window.vae.chart.train.length) };
    assert(await page.isVisible("#switch-device"), "no switch to the CPU on a page with WebGPU");
    await page.click("#switch-device");
    await page.waitForFunction(() => document.getElementById("gpu-status").dataset.state === "cpu", null, { timeout: 60000 });
    await idle();
    const [, text] = await status();
    console.log(`     page says: ${text}`);
    assert(/CPU in WebAssembly, slower than a GPU, because you chose it/.test(text), text);
    assert((await step()) === before.step, `the step went from ${before.step} to ${await step()}`);
    assert((await page.evaluate(() => window.vae.chart.train.length)) === before.points, "the chart's history was lost");
    const moved = diff(await pixels("samples"), before.samples);
    assert(moved < 0.5, `the CPU draws other samples from the same weights (${moved.toFixed(3)} levels)`);
    assert(/on (one|\d+) CPU threads?/.test(await page.textContent("#model-summary")), "the summary does not say the CPU trains");
    await trainTo(before.step + 5);
    const cpuRate = await page.textContent("#rate");
    await page.click("#switch-device");
    await page.waitForFunction(() => document.getElementById("gpu-status").dataset.state === "ready", null, { timeout: 60000 });
    await idle();
    const back = await step();
    assert(back >= before.step + 5, `back on the GPU at step ${back}`);
    await trainTo(back + 2);
    console.log(`     CPU ${cpuRate} samples/s, then GPU ${await page.textContent("#rate")} samples/s`);
  });

  await check("the first Train times both devices and trains on the faster (here the CPU), steps counted once; the GPU chosen by hand trains on WebGPU", async () => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
    const p = await context.newPage();
    const errors = watch(p);
    const status = async () => [await p.getAttribute("#gpu-status", "data-state"), await p.textContent("#gpu-message")];
    // The step shown, Adam's step count of the weights trained (the model is fresh: the two are
    // equal unless steps were lost or counted twice), and the step of the chart's last point.
    const counts = () => p.evaluate(() => {
      const t = window.vae.training;
      const last = window.vae.chart.train.at(-1);
      return { shown: Number(document.getElementById("step").textContent), adam: t.trainer.step(), total: t.totalSteps(),
        charted: last ? Math.round(last.epoch * t.trainer.stepsPerEpoch()) : 0 };
    });
    try {
      // Train pressed at once, as an impatient user does: the choice waits for the model.
      await p.goto(url, { waitUntil: "commit" });
      await p.click("#train");
      await p.waitForFunction(() => window.vae?.training.choice === "made" && !window.vae.training.changing(), null, { timeout: 120000 });
      const [state, text] = await status();
      const ms = await p.evaluate(() => window.vae.training.choiceMs);
      console.log(`     page says: ${text}`);
      console.log(`device_choice_ms ${Math.round(ms)}`);
      assert(state === "cpu", `expected the CPU to win on a software adapter, state "${state}": ${text}`);
      assert(/CPU [\d,]+ samples\/s, GPU [\d,]+ samples\/s \(.*a software adapter\): training on the CPU/.test(text), text);
      assert(ms < 2000, `timing the two devices took ${Math.round(ms)} ms`);
      await p.waitForFunction(() => Number(document.getElementById("step").textContent) >= 12, null, { timeout: 60000 });
      await p.click("#train");
      await readyOn(p);
      let c = await counts();
      assert(c.shown === c.adam && c.total === c.adam && c.charted === c.adam, `steps shown, trained and charted disagree: ${JSON.stringify(c)}`);
      // Chosen by hand, the GPU trains, and is not timed again.
      await p.click("#switch-device");
      await p.waitForFunction(() => document.getElementById("gpu-status").dataset.state === "ready", null, { timeout: 60000 });
      await readyOn(p);
      await p.click("#train");
      await p.waitForFunction((n) => Number(document.getElementById("step").textContent) >= n, c.shown + 4, { timeout: 60000 });
      await p.click("#train");
      await readyOn(p);
      const [stateAfter, textAfter] = await status();
      assert(stateAfter === "ready" && /WebGPU adapter/.test(textAfter) && !/samples\/s/.test(textAfter), `after choosing the GPU: ${stateAfter}: ${textAfter}`);
      c = await counts();
      assert(c.shown === c.total && c.charted === c.shown, `steps shown, counted and charted disagree on the GPU: ${JSON.stringify(c)}`);
      assert(errors.length === 0, errors.join("; "));
    } finally {
      await context.close();
    }
  });

  await check("no errors in the console, from the first check to here", async () => {
    assert(problems.length === 0, problems.join("; "));
  });

  await check("training survives a reload: it resumes at the saved step with the chart's history, and Start over clears it", async () => {
    // A context of its own: its own IndexedDB, untouched by the checks above.
    const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
    const p = await context.newPage();
    const errors = watch(p);
    const ready = () => readyOn(p);
    const saved = () => storedStep(p);
    const step = async () => Number(await p.textContent("#step"));
    try {
      await p.goto(url);
      await ready();
      assert(await p.isHidden("#session"), "a first visit says it resumed something");
      await p.click("#train");
      await p.waitForFunction(() => Number(document.getElementById("step").textContent) >= 8, null, { timeout: 120000 });
      await p.click("#train"); // pausing keeps the session
      await ready();
      const at = await step();
      for (let i = 0; i < 100 && (await saved()) !== at; i++) await p.waitForTimeout(100);
      assert((await saved()) === at, `the session holds step ${await saved()}, the page shows ${at}`);
      const points = await p.evaluate(() => window.vae.chart.train.length);
      const samples = await p.evaluate(() => Array.from(document.getElementById("samples").getContext("2d").getImageData(0, 0, 224, 224).data));

      await p.reload();
      await ready();
      const text = await p.textContent("#session-status");
      console.log(`     page says: ${text}`);
      assert(new RegExp(`Resumed from step ${at}, saved \\d\\d:\\d\\d`).test(text), text);
      assert((await step()) === at, `the page shows step ${await step()} after the reload, saved at ${at}`);
      assert((await p.evaluate(() => window.vae.chart.train.length)) === points && points > 0, "the chart's history was not restored");
      assert(/^\d+\.\d \(rec\. /.test(await p.textContent("#loss")), `the loss readout shows "${await p.textContent("#loss")}" after the reload`);
      const again = await p.evaluate(() => Array.from(document.getElementById("samples").getContext("2d").getImageData(0, 0, 224, 224).data));
      assert(diff(again, samples) < 0.01, "the resumed model draws different samples");
      await p.click("#train");
      await p.waitForFunction((at) => Number(document.getElementById("step").textContent) > at + 2, at, { timeout: 120000 });
      await p.click("#train");
      await ready();

      await p.click("#start-over");
      await ready();
      assert((await step()) === 0 && (await p.isHidden("#session")), "Start over did not start a fresh model");
      for (let i = 0; i < 50 && (await saved()) !== null; i++) await p.waitForTimeout(100);
      assert((await saved()) === null, "Start over left the session stored");

      // A session this page cannot use is said, discarded, and the page starts afresh.
      await p.evaluate(async () => {
        const kv = await import("./vendor/idb-keyval.js");
        await kv.set("current", { version: 999 }, kv.createStore("webvae", "session"));
      });
      await p.reload();
      await ready();
      const refused = await p.textContent("#session-status");
      console.log(`     page says: ${refused}`);
      assert(/could not be restored, and was discarded: it was saved by another version/.test(refused), refused);
      assert((await step()) === 0 && (await saved()) === null, "the unusable session was not discarded");
      assert(errors.length === 0, errors.join("; "));
    } finally {
      await context.close();
    }
  });

  // A page of its own (its own IndexedDB) on the CPU path (no WebGPU), training on the first
  // 1000 test digits at 32x32 (900 to train on): { context, p, errors }.
  const cpuPageOnDigits32 = async (options = {}) => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, ...options });
    await inPageAndWorker(context, withoutWebGpu);
    const p = await context.newPage();
    const errors = watch(p);
    await p.goto(url);
    await readyOn(p);
    await loadData(p, await digits32());
    await readyOn(p);
    return { context, p, errors };
  };

  await check("the user's own files are kept with the session: a reload resumes on them", async () => {
    const { context, p, errors } = await cpuPageOnDigits32();
    const ready = () => readyOn(p);
    try {
      await p.click("#train");
      await p.waitForFunction(() => Number(document.getElementById("step").textContent) >= 4, null, { timeout: 60000 });
      await p.click("#train"); // pausing keeps the session, with the files
      await ready();
      const at = Number(await p.textContent("#step"));
      const saved = () => storedStep(p);
      for (let i = 0; i < 100 && (await saved()) !== at; i++) await p.waitForTimeout(100);
      await p.reload();
      await ready();
      const text = await p.textContent("#session-status");
      const summary = await p.textContent("#data-summary");
      console.log(`     page says: ${text} ${summary}`);
      assert(new RegExp(`Resumed from step ${at}`).test(text), text);
      assert(/digits32-images-idx3-ubyte/.test(summary) && /of 32x32 pixels/.test(summary), `not the user's files: ${summary}`);
      assert(Number(await p.textContent("#step")) === at, "not at the saved step");
      assert(errors.length === 0, errors.join("; "));
    } finally {
      await context.close();
    }
  });

  // Without WebGPU (or with WebGPU but no adapter) the page trains on the CPU in WebAssembly:
  // it says so and why in plain words, with advice and the technical report folded away, and
  // every control works. With `train`, it trains: the loss falls and the samples change.
  const noGpuPage = async (init, name, inBrowser = browser, train = false) => {
    const p = await inBrowser.newPage({ viewport: { width: 1100, height: 800 } });
    const errors = watch(p);
    if (init) await inPageAndWorker(p, init);
    const t0 = Date.now();
    await p.goto(url);
    const ms = await firstSamplesMs(p, t0);
    if (train) console.log(`first_samples_ms ${ms} device cpu`);
    await readyOn(p);
    const seen = await p.evaluate(() => {
      const shown = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
      return {
        state: document.getElementById("gpu-status").dataset.state,
        message: document.getElementById("gpu-message").textContent,
        advice: shown(document.getElementById("gpu-advice")) ? document.getElementById("gpu-advice").textContent : "",
        detailsShown: shown(document.getElementById("gpu-details")),
        detailsOpen: document.getElementById("gpu-details").open,
        report: document.getElementById("gpu-report").textContent,
        canvases: [...document.querySelectorAll("canvas")].filter(shown).map((c) => c.id),
        trainable: !document.getElementById("train").disabled,
        switchShown: shown(document.getElementById("switch-device")),
        summary: document.getElementById("model-summary").textContent,
      };
    });
    try {
      console.log(`     page says: ${seen.message} | ${seen.advice}`);
      assert(seen.state === "cpu", `not training on the CPU: ${seen.state}`);
      assert(/^Training on the CPU in WebAssembly, slower than a GPU\. /.test(seen.message), `unexpected message: ${seen.message}`);
      assert(!/not compiled in|wgpu|RequestAdapterError/i.test(seen.message + seen.advice),
        `the plain message carries the technical report: ${seen.message} ${seen.advice}`);
      assert(seen.advice.length > 40, "no advice on how to get the GPU");
      assert(seen.detailsShown && !seen.detailsOpen && seen.report.length > 0,
        "the technical report is not there, folded away, for those who want it");
      assert(seen.trainable && seen.canvases.includes("samples") && seen.canvases.includes("chart"), "the page cannot train");
      assert(!seen.switchShown, "a switch to a GPU that is not there is shown");
      assert(/on (one|\d+) CPU threads?/.test(seen.summary), `the model summary does not say how a step runs: ${seen.summary}`);
      assert(ms <= FIRST_SAMPLES_MAX_MS, `the first samples took ${ms} ms on the CPU path`);
      if (train) {
        const grid = () => p.evaluate(() => Array.from(document.getElementById("samples").getContext("2d").getImageData(0, 0, 224, 224).data));
        const before = await grid();
        await p.click("#train");
        await p.waitForFunction(() => Number(document.getElementById("step").textContent) >= 3, null, { timeout: 60000 });
        const first = parseFloat(await p.textContent("#loss"));
        await p.waitForFunction(() => Number(document.getElementById("step").textContent) >= 60, null, { timeout: 120000 });
        await p.click("#train");
        await p.waitForFunction(() => !window.vae.busy(), null, { timeout: 60000 });
        const last = parseFloat(await p.textContent("#loss"));
        const changed = diff(await grid(), before);
        const rate = await p.textContent("#rate");
        console.log(`     CPU path: loss ${first.toFixed(1)} -> ${last.toFixed(1)} by step ${await p.textContent("#step")}, ${rate} samples/s, samples changed by ${changed.toFixed(1)} levels`);
        assert(last < first - 20, `the loss did not fall on the CPU path: ${first} -> ${last}`);
        assert(changed > 1, `the samples did not change (${changed.toFixed(2)} levels)`);
      }
      await p.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
      assert(errors.length === 0, errors.join("; "));
    } finally {
      await p.close();
    }
    return seen;
  };

  await check("a browser without WebGPU trains on the CPU: it says so and why, the loss falls and the samples change", async () => {
    const seen = await noGpuPage(withoutWebGpu, "no-webgpu", browser, true);
    assert(/does not support WebGPU/.test(seen.message), `unexpected message: ${seen.message}`);
  });

  await check("training the conv preset on the CPU path leaves the page's thread free: no task over 50 ms", async () => {
    // The trainer lives in a worker: the page only draws and answers. 32x32 digits (7 steps an
    // epoch), so that the training seen includes epochs' ends: evaluation, every view, a snapshot
    // kept in IndexedDB.
    const { context, p, errors } = await cpuPageOnDigits32();
    try {
      await p.selectOption('#settings [name="kind"]', "conv");
      await p.click("#apply");
      await readyOn(p);
      assert(/conv2d/.test(await p.textContent("#model-summary")), await p.textContent("#model-summary"));
      await p.evaluate(() => {
        window.longTasks = [];
        new PerformanceObserver((list) => window.longTasks.push(...list.getEntries().map((e) => e.duration)))
          .observe({ type: "longtask" });
      });
      const t0 = Date.now();
      await p.click("#train");
      await p.waitForFunction(() => Number(document.getElementById("step").textContent) >= 24, null, { timeout: 300000 });
      await p.click("#train");
      await readyOn(p);
      const seconds = (Date.now() - t0) / 1000;
      const tasks = await p.evaluate(() => window.longTasks);
      const longest = Math.round(Math.max(0, ...tasks));
      const threads = await p.evaluate(() => window.vae.training.remote.threads);
      console.log(`longest_task_ms ${longest} tasks_over_50ms ${tasks.length} training conv on the CPU path (${threads} thread${threads === 1 ? "" : "s"}) for ${seconds.toFixed(1)} s, ` +
        `${await p.textContent("#step")} steps, epoch ${await p.textContent("#epoch")}, test −ELBO ${await p.textContent("#test-nelbo")}`);
      assert(Number(await p.textContent("#epoch")) >= 3, "fewer than 3 epochs' ends seen");
      assert(tasks.length === 0, `${tasks.length} tasks over 50 ms on the page's thread, the longest ${longest} ms`);
      assert(errors.length === 0, errors.join("; "));
    } finally {
      await context.close();
    }
  });

  // (It serves the page both ways itself; with PLAIN, there is no isolated server to start from.)
  if (!PLAIN) await check("the CPU path uses every core where the page is isolated and one thread where not, saying which; both builds train the same bits", async () => {
    const threads = (p) => p.evaluate(() => window.vae.training.remote.threads);
    const status = (p) => p.textContent("#gpu-message");
    // Isolated (this server sends the headers, as `make serve` does): the threaded build.
    const { context, p, errors } = await cpuPageOnDigits32();
    try {
      const cores = await p.evaluate(() => Math.min(navigator.hardwareConcurrency, 8));
      assert(cores > 1, "this machine reports one core: nothing to share");
      assert(await threads(p) === cores, `${await threads(p)} threads on ${cores} cores`);
      assert((await status(p)).includes(`It uses ${cores} threads, one per core.`), await status(p));
      // The same model trained on the plain build (one thread) and on the threaded one: the
      // checkpoints (weights, Adam's state) must hold the same bytes, for both architectures.
      // (Their headers' metadata may come in another order: a HashMap's.)
      const same = await p.evaluate(async () => {
        const { Remote } = await import("./remote.js");
        const { BUNDLED, fetchBundled } = await import("./panels/data.js");
        const files = await fetchBundled();
        const configs = [{}, { architecture: { kind: "conv", channels: [32, 64], dense: 256 }, image: [28, 28] }];
        const saved = [];
        for (const threads of [1, navigator.hardwareConcurrency]) {
          const remote = new Remote({ threads });
          const device = await remote.cpu();
          const data = await remote.data(BUNDLED, files.map((f) => f.slice()), 1 << 30);
          for (const config of configs) {
            const trainer = await remote.trainer(device, config, data);
            await trainer.train(3);
            saved.push({ threads: remote.threads, bytes: await trainer.save(trainer.step(), true) });
          }
        }
        const header = (bytes) => {
          const length = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
          const json = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)));
          const sorted = (o) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
          return { json: JSON.stringify(sorted({ ...json, __metadata__: sorted(json.__metadata__) })), data: bytes.subarray(8 + length) };
        };
        const equal = (a, b) => {
          const [x, y] = [header(a), header(b)];
          return x.json === y.json && x.data.length === y.data.length && x.data.every((v, i) => v === y.data[i]);
        };
        return [0, 1].map((i) => ({ threads: [saved[i].threads, saved[i + 2].threads], equal: equal(saved[i].bytes, saved[i + 2].bytes) }));
      });
      for (const [i, { threads: t, equal }] of same.entries()) {
        assert(t[0] === 1 && t[1] > 1, `the builds compared ran on ${t.join(" and ")} threads`);
        assert(equal, `${["MLP", "conv"][i]}: 3 steps on 1 and ${t[1]} threads saved different checkpoints`);
      }
      assert(errors.length === 0, errors.join("; "));
    } finally {
      await context.close();
    }
    // A static host that sends no headers, and a browser that keeps service workers out: one
    // thread, said so; training works as ever.
    const plain = await serve({ isolated: false });
    try {
      const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, serviceWorkers: "block" });
      await inPageAndWorker(context, withoutWebGpu);
      const p = await context.newPage();
      const errors = watch(p);
      try {
        await p.goto(plain.url);
        await readyOn(p);
        assert(!(await p.evaluate(() => crossOriginIsolated)), "isolated without headers or a service worker");
        assert(await threads(p) === 1, `${await threads(p)} threads unisolated`);
        assert(/It uses one thread: this page is not cross-origin isolated/.test(await status(p)), await status(p));
        const before = await greyLevels(p, "samples");
        await p.click("#train");
        await p.waitForFunction(() => Number(document.getElementById("step").textContent) >= 20, null, { timeout: 60000 });
        await p.click("#train");
        await readyOn(p);
        assert(diff(before, await greyLevels(p, "samples")) > 1, "the samples did not change");
        assert(errors.length === 0, errors.join("; "));
      } finally {
        await context.close();
      }
      // The same host with service workers allowed: sw.js isolates the page (one reload, at
      // once), and the CPU path has its threads again.
      const swContext = await browser.newContext({ viewport: { width: 1100, height: 800 }, serviceWorkers: "allow" });
      const q = await swContext.newPage();
      try {
        let loads = 0;
        q.on("framenavigated", (frame) => { if (frame === q.mainFrame()) loads += 1; });
        await q.goto(plain.url);
        await q.waitForFunction(() => crossOriginIsolated && window.vae && window.vae.training.trainer, null, { timeout: 60000 });
        await readyOn(q);
        assert(loads === 2, `${loads} loads: the page should reload once, to be served through its service worker`);
        assert(await threads(q) > 1, `${await threads(q)} threads with the service worker's isolation`);
        // No loop: a reload of the isolated page stays one load.
        await q.reload();
        await readyOn(q);
        assert(loads === 3 && await q.evaluate(() => crossOriginIsolated), `${loads} loads after one reload`);
      } finally {
        await swContext.close();
      }
    } finally {
      plain.server.close();
    }
  });

  await check("a full storage quota is reported and training goes on", async () => {
    // The CPU path (no WebGPU) for speed; every IndexedDB write fails as a full quota does.
    const p = await browser.newPage({ viewport: { width: 1100, height: 800 } });
    const errors = watch(p);
    await inPageAndWorker(p, withoutWebGpu, () => {
      IDBObjectStore.prototype.put = () => { throw new DOMException("The quota has been exceeded.", "QuotaExceededError"); };
    });
    try {
      await p.goto(url);
      await readyOn(p);
      await p.click("#train");
      await p.waitForFunction(() => Number(document.getElementById("step").textContent) >= 5, null, { timeout: 60000 });
      await p.click("#train"); // pausing keeps the session: the write fails
      await p.waitForFunction(() => !document.getElementById("session").hidden, null, { timeout: 30000 });
      const text = await p.textContent("#session-status");
      console.log(`     page says: ${text}`);
      assert(/could not be kept for the next visit \(this browser's storage for the page is full\); training goes on/.test(text), text);
      const at = Number(await p.textContent("#step"));
      await p.click("#train");
      await p.waitForFunction((at) => Number(document.getElementById("step").textContent) > at + 3, at, { timeout: 60000 });
      await p.click("#train");
      assert(errors.length === 0, errors.join("; "));
    } finally {
      await p.close();
    }
  });

  await check("New samples, the scrub slider, the test −ELBO after an epoch, the chart's values on hover, a snapshot when the tab is hidden", async () => {
    // On the CPU path (fast) with 900 digits: 8 steps per epoch at batch 128.
    const { context, p, errors } = await cpuPageOnDigits32();
    const ready = () => readyOn(p);
    const grey = (id) => greyLevels(p, id);
    try {
      assert((await p.textContent("#test-nelbo")) === "–", "a test −ELBO before any epoch");
      // About 20 epochs, so that the decoder tells digits apart (the slider's ends differ).
      await p.click("#train");
      await p.waitForFunction(() => Number(document.getElementById("step").textContent) >= 150, null, { timeout: 120000 });
      await p.click("#train");
      await ready();
      const nelbo = parseFloat(await p.textContent("#test-nelbo"));
      const points = await p.evaluate(() => window.vae.chart.test.map((t) => t.nelbo.toFixed(1)));
      console.log(`     test −ELBO after the last epoch: ${nelbo}; chart's test points ${points.join(", ")}`);
      assert(nelbo > 50 && nelbo < 600 && points.includes(nelbo.toFixed(1)), `test −ELBO ${nelbo}, chart ${points}`);

      const before = await grey("samples");
      await p.click("#new-samples");
      await ready();
      // Other codes draw other digits; the same codes would draw the very same pixels.
      const moved = diff(await grey("samples"), before);
      console.log(`     New samples: the grid moved ${moved.toFixed(2)} levels`);
      assert(moved > 2, `New samples drew the same samples (${moved.toFixed(3)} levels)`);

      // The scrub slider's ends are the two picked digits' reconstructions (32x32 here).
      // Two digits of different labels as A and B.
      const [a, b] = await p.evaluate(() => {
        const labels = window.vae.training.data.testLabels();
        return [0, labels.findIndex((l) => l !== labels[0])];
      });
      await p.check('input[name="slot"][value="a"]');
      await p.click(`#gallery .digit[data-index="${a}"]`);
      await p.click(`#gallery .digit[data-index="${b}"]`);
      await ready();
      const apart = diff(await grey("slot-a-recon"), await grey("slot-b-recon"));
      assert(apart > 4, `digits A and B reconstruct alike (${apart.toFixed(2)} levels): the slider's ends cannot be told apart`);
      for (const [value, slot] of [["0", "slot-a-recon"], ["100", "slot-b-recon"]]) {
        await p.locator("#scrub").fill(value);
        await ready();
        const e = diff(await grey("scrubbed"), await grey(slot));
        assert(e <= 1, `the slider at ${value} differs from ${slot} by ${e.toFixed(2)} levels`);
      }

      const box = await p.locator("#chart").boundingBox();
      await p.locator("#chart").hover({ position: { x: box.width * 0.9, y: box.height / 2 } });
      await p.waitForFunction(() => !document.getElementById("chart-tip").hidden, null, { timeout: 5000 });
      const tip = await p.textContent("#chart-tip");
      console.log(`     chart tip: ${tip}`);
      assert(new RegExp(`^epoch \\d+\\.\\d\\d: loss \\d+\\.\\d, reconstruction \\d+\\.\\d, KL \\d+\\.\\d; test −ELBO \\d+\\.\\d at epoch \\d+$`).test(tip), tip);

      // Hidden (the tab closed or switched away from) while training: training stops, and the
      // session holds every step trained.
      await p.click("#train");
      await p.waitForFunction(() => Number(document.getElementById("step").textContent) >= 30, null, { timeout: 60000 });
      const saved = () => storedStep(p);
      await p.evaluate(() => {
        Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
        document.dispatchEvent(new Event("visibilitychange"));
      });
      await p.waitForTimeout(500);
      const shown = Number(await p.textContent("#step"));
      for (let i = 0; i < 100 && (await saved()) !== shown; i++) await p.waitForTimeout(100);
      await p.waitForTimeout(1500);
      const later = Number(await p.textContent("#step"));
      console.log(`     hidden at step ${shown}: the session holds step ${await saved()}; ${later - shown} steps trained while hidden`);
      assert((await saved()) === shown, `the session holds step ${await saved()}, the page trained ${shown}`);
      assert(later === shown, `training went on while hidden (${shown} -> ${later})`);
      assert(errors.length === 0, errors.join("; "));
    } finally {
      await context.close();
    }
  });

  await check("training that diverges is stopped with a message, and Reset the model trains again", async () => {
    // On the CPU path: weights whose log-variance biases are 1e6 (finite, so the file loads;
    // exp(logvar) overflows at the first step).
    const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, acceptDownloads: true });
    await inPageAndWorker(context, withoutWebGpu);
    const p = await context.newPage();
    const errors = watch(p);
    const ready = () => readyOn(p);
    try {
      await p.goto(url);
      await ready();
      const [download] = await Promise.all([p.waitForEvent("download"), p.click("#save")]);
      const bytes = await readFile(await download.path());
      const n = Number(bytes.readBigUInt64LE(0));
      const [start, end] = JSON.parse(bytes.subarray(8, 8 + n).toString())["logvar.bias"].data_offsets;
      for (let at = 8 + n + start; at < 8 + n + end; at += 4) bytes.writeFloatLE(1e6, at);
      await p.setInputFiles("#load", { name: "huge.safetensors", mimeType: "application/octet-stream", buffer: bytes });
      await p.waitForFunction(() => /Loaded huge/.test(document.getElementById("data-message").textContent));
      await ready();
      const at = Number(await p.textContent("#step"));
      await p.click("#train");
      await p.waitForFunction(() => !document.getElementById("alert").hidden, null, { timeout: 60000 });
      const text = await p.textContent("#alert-message");
      console.log(`     page says: ${text}`);
      assert(/^Training diverged: training diverged \(the loss became infinite or NaN by step \d+\)/.test(text), text);
      assert((await p.textContent("#train")) === "Train" && (await p.isDisabled("#train")), "Train can still be pressed on a diverged model");
      assert(Number(await p.textContent("#step")) === at, "steps were counted after the divergence");
      assert((await p.textContent("#alert-action")) === "Reset the model", await p.textContent("#alert-action"));
      await p.click("#alert-action");
      await ready();
      assert(await p.isHidden("#alert"), "the message stays after the reset");
      await p.click("#train");
      await p.waitForFunction(() => Number(document.getElementById("step").textContent) >= 5, null, { timeout: 60000 });
      await p.click("#train");
      assert(errors.length === 0, errors.join("; "));
    } finally {
      await context.close();
    }
  });

  await check("a GPU adapter that refuses to open a device: the page trains on the CPU and says why", async () => {
    const seen = await noGpuPage(() => {
      GPUAdapter.prototype.requestDevice = async () => { throw new DOMException("no device for you", "OperationError"); };
    }, "no-device");
    assert(/refused to open a device/.test(seen.message), `unexpected message: ${seen.message}`);
  });

  await check("a browser whose WebGPU offers no adapter trains on the CPU and says why, with advice", async () => {
    const seen = await noGpuPage(() => { GPU.prototype.requestAdapter = async () => null; }, "no-adapter");
    assert(/did not offer a GPU adapter/.test(seen.message), `unexpected message: ${seen.message}`);
  });

  await check("a real Chromium without WebGPU switched on trains on the CPU and reads the same, not wgpu's report", async () => {
    // Headless Chromium without --enable-unsafe-webgpu has navigator.gpu but no adapter.
    const plain = await launch({ webgpu: false });
    try {
      const seen = await noGpuPage(null, "no-webgpu-flags", plain);
      assert(/did not offer a GPU adapter/.test(seen.message), `unexpected message: ${seen.message}`);
      assert(/not compiled in/.test(seen.report), `wgpu's report is not kept in the details: ${seen.report}`);
    } finally {
      await plain.close();
    }
  });
} finally {
  await browser.close();
  server.close();
}

const failed = results.filter(([, e]) => e).length;
console.log(`e2e: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
