// The samples panel: the grid decoded from fixed prior codes, and reconstructions of test
// digits, each with its per-pixel σ images on demand.
import { $, draw, failsSafely, training, view } from "../page.js";
import { drawWaiting } from "../views.js";

// Before their first drawing the two views say what they wait for.
export function showWaiting(text) {
  for (const id of ["samples", "recon"]) {
    if ($(id).dataset.drawn === undefined) drawWaiting($(id), text);
  }
}

// What a prior sample is, for a model with categorical latents (`classes` > 0 classes of
// `variables` variables) or Gaussian ones.
export function describeSamples(variables, classes) {
  $("samples-caption").textContent = classes
    ? `64 fixed prior codes, a random class for each of the ${variables} variables (one-hot), decoded as training goes on.`
    : "64 fixed codes z ~ N(0, I), decoded as training goes on.";
}

// What the per-pixel σ images show, for the model's likelihood. They are drawn as 2σ (white:
// σ of 0.5, the largest any distribution on [0, 1] can have).
function stdCaption(lik) {
  const what = lik.kind === "gaussian_var" ? "the decoder's own standard deviation per pixel: bright where it is unsure (stroke edges)"
    : lik.kind === "gaussian" ? `the fixed σ = ${Number(lik.sigma.toPrecision(3))} everywhere (this likelihood learns no variance)`
    : "the Bernoulli standard deviation √(p(1 − p)): bright where p is near 0.5";
  return `σ images: ${what}; white is σ = 0.5.`;
}

// The σ images of `run(trainer)` (2σ, so that σ = 0.5 is white), with their caption shown
// under the view `id`.
function stdImages(id, run) {
  return training.task(async (t) => {
    const caption = stdCaption(t.config().likelihood);
    const std = await run(t);
    $(`${id}-std-caption`).textContent = caption;
    $(`${id}-std-caption`).hidden = false;
    return std.map((s) => 2 * s);
  });
}

export const refreshSamples = failsSafely(async () => {
  const seed = view.sampleSeed;
  const std = $("samples-std").checked;
  $("samples-std-caption").hidden = !std;
  const images = await (std ? stdImages("samples", async (t) => t.decodeStd(await t.priorCodes(64, seed)))
    : training.task(async (t) => t.decode(await t.priorCodes(64, seed))));
  draw($("samples"), images, 8);
});

export const refreshRecon = failsSafely(async () => {
  const x = training.data.testImages(0, 10);
  const rows = [x, await training.task((t) => t.reconstruct(x))];
  const std = $("recon-std").checked;
  $("recon-std-caption").hidden = !std;
  if (std) rows.push(await stdImages("recon", (t) => t.reconstructStd(x)));
  const all = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  rows.reduce((at, r) => { all.set(r, at); return at + r.length; }, 0);
  draw($("recon"), all, 10);
});

$("samples-std").addEventListener("change", () => refreshSamples());
$("recon-std").addEventListener("change", () => refreshRecon());
$("new-samples").addEventListener("click", () => {
  view.sampleSeed += 1;
  refreshSamples();
});
