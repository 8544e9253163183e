// The samples panel: the grid decoded from fixed prior codes, and reconstructions of test
// digits, each with its per-pixel σ images on demand; for a hierarchy of latents, variations
// of test digits with one part of their code kept and the rest redrawn.
import { $, draw, failsSafely, training, view } from "../page.js";
import { drawWaiting } from "../views.js";

// Before their first drawing the two views say what they wait for.
export function showWaiting(text) {
  for (const id of ["samples", "recon"]) {
    if ($(id).dataset.drawn === undefined) drawWaiting($(id), text);
  }
}

// What a prior sample and a reconstruction are, for a model with categorical latents (`classes`
// > 0 classes of `variables` variables), Gaussian ones, or a hierarchy (`groups`, top first).
export function describeSamples(variables, classes, groups) {
  const [top, ...lower] = groups.map((g) => g.split(" ")[0]);
  $("samples-caption").textContent = classes
    ? `64 fixed prior codes, a random class for each of the ${variables} variables (one-hot), decoded as training goes on.`
    : lower.length
      ? `64 fixed top-group codes ${top} ~ N(0, I), decoded with ${lower.join(", ")} at the mean of its prior given ${top}.`
      : "64 fixed codes z ~ N(0, I), decoded as training goes on.";
  $("recon-caption").textContent = lower.length
    ? "Test digits (top) and their reconstructions, every group at its posterior mean (bottom)."
    : "Test digits (top) and their reconstructions, decoded at z = μ(x) (bottom).";
  $("variations-section").hidden = lower.length === 0;
  $("variations-caption").textContent = `Six test digits, each followed by eight variations: keeping ${top} at its ` +
    `posterior mean and drawing ${lower.join(", ")} from its prior given ${top} varies the details of the same digit; ` +
    `keeping ${lower.join(", ")} and drawing ${top} from N(0, I) shows what the top group decides.`;
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

// A hierarchy's variations: six test digits, each followed by eight variations of its code.
export const refreshVariations = failsSafely(async () => {
  if ($("variations-section").hidden) return;
  const keep = document.querySelector('input[name="keep"]:checked').value;
  const seed = view.variationSeed;
  const x = training.data.testImages(0, 6);
  const varied = await training.task((t) => t.variations(x, 8, keep, seed));
  const size = x.length / 6;
  const all = new Float32Array(x.length * 9);
  for (let i = 0; i < 6; i++) {
    all.set(x.subarray(i * size, (i + 1) * size), i * 9 * size);
    all.set(varied.subarray(i * 8 * size, (i + 1) * 8 * size), (i * 9 + 1) * size);
  }
  draw($("variations"), all, 9);
  $("variations").dataset.keep = keep;
});

$("samples-std").addEventListener("change", () => refreshSamples());
$("recon-std").addEventListener("change", () => refreshRecon());
for (const radio of document.querySelectorAll('input[name="keep"]')) radio.addEventListener("change", () => refreshVariations());
$("new-variations").addEventListener("click", () => {
  view.variationSeed += 1;
  refreshVariations();
});
$("new-samples").addEventListener("click", () => {
  view.sampleSeed += 1;
  refreshSamples();
});
