// The latent panel: a traversal of digit A's code, one row per dimension (or categorical
// variable) ordered by its average KL, and a map of the test set's codes coloured by label,
// with the decoded manifold when a Gaussian latent space is 2-D.
import { $, draw, failsSafely, imagePixels, training, view, wasm } from "../page.js";
import { drawScatter, LABEL_COLOURS } from "../views.js";
import { hierarchyNote } from "./interpolation.js";

const TRAVERSAL_STEPS = 9;
const MAP_POINTS = 2000; // test codes in the scatter

// What a traversal row is, for a model with categorical latents (`classes` > 0) or Gaussian ones.
export function describeTraversal(classes, groups = []) {
  $("traversal-caption").textContent = (classes
    ? `Digit A's code with one variable switched to each of its ${classes} classes per row, the ` +
      "most-used variables (largest average KL) first. Variables the model does not use change nothing."
    : "Digit A's code with one dimension swept across the prior's range (5% to 95%) per row, the " +
      "most-used dimensions (largest average KL) first. Dimensions the model does not use change nothing.") +
    hierarchyNote(groups);
}

// Average KL per dimension (or variable) and the scatter of test codes; the manifold when a
// Gaussian latent is 2-D.
export const refreshLatent = failsSafely(async () => {
  const n = Math.min(MAP_POINTS, training.data.testCount());
  const x = training.data.testImages(0, n);
  const { mu, logvar, probabilities } = await training.task((t) => t.encode(x));
  const { variables: latent, classes } = view.latent;
  const kl = classes ? wasm.klPerVariable(probabilities, latent, classes) : wasm.klPerDimension(mu, logvar, latent);
  view.usage = Array.from(wasm.dimensionsByUse(kl), (dim) => ({ dim, kl: kl[dim] }));
  const [dx, dy] = latent === 1 ? [0, 0] : latent === 2 ? [0, 1] : [view.usage[0].dim, view.usage[1].dim];
  if (classes) drawClassMap(probabilities, n, dx, dy);
  else await drawCodeMap(mu, n, dx, dy);
  await refreshTraversal();
});

// Gaussian latents' map: mu of the test digits in dimensions dx and dy, coloured by label; with
// a 2-D latent space, the decoded manifold beside it.
async function drawCodeMap(mu, n, dx, dy) {
  const latent = view.latent.variables;
  const xs = [], ys = [];
  for (let i = 0; i < n; i++) {
    xs.push(mu[i * latent + dx]);
    ys.push(latent === 1 ? 0 : mu[i * latent + dy]);
  }
  drawScatter($("scatter"), xs, ys, training.data.testLabels());
  const manifold = $("manifold");
  manifold.hidden = latent !== 2;
  if (latent === 2) {
    const codes = wasm.manifoldCodes(new Float32Array(2), 0, 1, 20);
    draw(manifold, await training.task((t) => t.decode(codes)), 20);
    $("map-caption").textContent = "Left: digits decoded on a 20x20 grid of the prior's quantiles (the paper's " +
      "figure 4). Right: μ of test digits, coloured by label, on the same axes.";
  } else {
    $("map-caption").textContent = latent === 1
      ? "μ of test digits along the single latent dimension, coloured by label."
      : `μ of test digits in the two most-used dimensions, z${dx} (across) and z${dy} (up), coloured by label. ` +
        "Set the latent dimensions to 2 to see the decoded manifold.";
  }
}

// Categorical latents' map: each test digit at the most likely classes of the two most-used
// variables (jittered within the cell), coloured by its label.
function drawClassMap(probabilities, n, dx, dy) {
  const { variables, classes } = view.latent;
  const best = wasm.mostLikelyClasses(probabilities, classes);
  // A fixed jitter per digit and axis (a hash of both: murmur3's finaliser), so the map only
  // moves when classes change, and the two axes' jitters are unrelated.
  const jitter = (i, axis) => {
    let h = Math.imul(2 * i + axis + 1, 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return 0.1 + 0.8 * ((h ^ (h >>> 16)) >>> 0) / 4294967296;
  };
  const xs = [], ys = [];
  for (let i = 0; i < n; i++) {
    xs.push(best[i * variables + dx] + jitter(i, 0));
    ys.push(variables === 1 ? classes / 2 : best[i * variables + dy] + jitter(i, 1));
  }
  drawScatter($("scatter"), xs, ys, training.data.testLabels(), 0, classes, Array.from({ length: classes + 1 }, (_, k) => k));
  $("manifold").hidden = true;
  $("map-caption").textContent = variables === 1
    ? `Test digits by the most likely class (0 to ${classes - 1}, across) of the single variable, coloured by label.`
    : `Test digits placed by the most likely class (0 to ${classes - 1}) of the two most-used variables, v${dx} (across) ` +
      `and v${dy} (up), coloured by label: a cell is one pair of classes.`;
}

// Digit A's code (from the interpolation) with each dimension swept, most-used first; for
// categorical latents, each variable switched through its classes.
export const refreshTraversal = failsSafely(async () => {
  if (!view.usage || !view.codes) return;
  const { classes } = view.latent;
  const dims = Uint32Array.from(view.usage.map((u) => u.dim));
  const steps = classes || TRAVERSAL_STEPS;
  const codes = classes ? wasm.classTraversalCodes(view.codes.a, dims, classes) : wasm.traversalCodes(view.codes.a, dims, steps);
  const images = await training.task((t) => t.decode(codes));
  const rows = view.usage.map(({ dim, kl }, r) => {
    const row = document.createElement("div");
    row.className = "trow";
    const label = document.createElement("span");
    const name = classes ? `v${dim}` : `z${dim}`;
    label.textContent = `${name} · KL ${kl.toFixed(2)}`;
    const canvas = document.createElement("canvas");
    canvas.className = "pixels";
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", classes
      ? `Digit A decoded with variable ${dim} set to each of its ${classes} classes (average KL ${kl.toFixed(2)} nats)`
      : `Digit A decoded with z${dim} swept from low to high (average KL ${kl.toFixed(2)} nats)`);
    draw(canvas, images.subarray(r * steps * imagePixels(), (r + 1) * steps * imagePixels()), steps);
    row.append(label, canvas);
    return row;
  });
  $("traversal").replaceChildren(...rows);
});

$("scatter-legend").replaceChildren(...LABEL_COLOURS.map((colour, label) => {
  const li = document.createElement("li");
  li.innerHTML = `<span class="swatch" style="--c:${colour}"></span>${label}`;
  return li;
}));
