// The interpolation panel: a gallery of test digits and a drawing pad to pick two digits from,
// the path between their codes decoded as a strip, and a slider that scrubs along it.
import { $, draw, failsSafely, imagePixels, imageShape, training, view, wasm } from "../page.js";
import { DrawingPad, drawWaiting } from "../views.js";
import { refreshTraversal } from "./latent.js";

const STRIP = 10; // digits in the interpolation strip
const GALLERY = 16;

const pad = new DrawingPad($("pad"), () => updateDrawing());

// "Use drawing" needs a model and some ink.
export function updateDrawing() {
  $("use-drawing").disabled = !training.trainer || pad.empty;
}

// Before its first drawing the strip says what it waits for.
export function showWaiting(text) {
  if ($("strip").dataset.drawn === undefined) drawWaiting($("strip"), text);
}

// How codes are joined, for a model with categorical latents (`classes` > 0) or Gaussian ones.
export function describeInterpolation(classes, groups = []) {
  $("interp-caption").textContent = (classes
    ? "Pick two digits: click one below, or draw one. Their class probabilities are mixed along a " +
      "straight path whose points are decoded."
    : "Pick two digits: click one below, or draw one. Their codes μ(x) are joined by a path whose " +
      "points are decoded.") + hierarchyNote(groups);
  $("spherical-choice").hidden = !!classes;
}

// Of a hierarchy, the latent views act on the top group's code.
export function hierarchyNote(groups) {
  if (groups.length < 2) return "";
  const [top, ...lower] = groups.map((g) => g.split(" ")[0]);
  return ` A code here is the top group's, ${top}; each is decoded with ${lower.join(", ")} at its prior's mean given ${top}.`;
}

// New data: the first two test digits are picked, and the gallery starts over.
export function pickFirstDigits() {
  view.picks = { a: pickTest(0), b: pickTest(1) };
  view.galleryStart = 0;
  drawGallery();
}

function pickTest(i) {
  return { x: training.data.testImages(i, 1), label: `test digit ${training.data.testLabels()[i]} (#${i})` };
}

function drawGallery() {
  const gallery = $("gallery");
  gallery.replaceChildren();
  const labels = training.data.testLabels();
  for (let k = 0; k < GALLERY; k++) {
    const i = (view.galleryStart + k) % training.data.testCount();
    const button = document.createElement("button");
    button.type = "button";
    button.className = "digit";
    button.dataset.index = String(i);
    button.setAttribute("aria-label", `Test digit ${labels[i]}, number ${i}`);
    const canvas = document.createElement("canvas");
    draw(canvas, training.data.testImages(i, 1), 1);
    button.append(canvas);
    button.addEventListener("click", () => pick(pickTest(i)));
    gallery.append(button);
  }
}

function pick(p) {
  view.picks[view.slot] = p;
  // After choosing A, the next click chooses B.
  if (view.slot === "a") {
    view.slot = "b";
    document.querySelector('input[name="slot"][value="b"]').checked = true;
  }
  // The traversal starts from digit A's code, which the interpolation computes.
  refreshInterpolation().then(refreshTraversal);
}

// Slerp suits Gaussian codes only: categorical codes are probabilities, mixed linearly.
const spherical = () => !view.latent.classes && document.querySelector('input[name="path"]:checked').value === "spherical";

export const refreshInterpolation = failsSafely(async () => {
  const { a, b } = view.picks;
  if (!a || !b) return;
  const pixels = imagePixels();
  const x = new Float32Array(2 * pixels);
  x.set(a.x);
  x.set(b.x, pixels);
  draw($("slot-a"), a.x, 1);
  draw($("slot-b"), b.x, 1);
  $("slot-a").setAttribute("aria-label", `Digit A: ${a.label}`);
  $("slot-b").setAttribute("aria-label", `Digit B: ${b.label}`);
  const { code } = await training.task((t) => t.encode(x));
  const half = code.length / 2;
  view.codes = { a: code.slice(0, half), b: code.slice(half) };
  const recon = await training.task((t) => t.reconstruct(x));
  draw($("slot-a-recon"), recon.subarray(0, pixels), 1);
  draw($("slot-b-recon"), recon.subarray(pixels), 1);
  const path = wasm.interpolate(view.codes.a, view.codes.b, STRIP, spherical());
  draw($("strip"), await training.task((t) => t.decode(path)), STRIP);
  await refreshScrub();
});

export const refreshScrub = failsSafely(async () => {
  if (!view.codes) return;
  const t = Number($("scrub").value) / 100;
  const path = wasm.interpolate(view.codes.a, view.codes.b, 101, spherical());
  const latent = view.codes.a.length;
  const at = Math.round(t * 100) * latent;
  draw($("scrubbed"), await training.task((tr) => tr.decode(path.slice(at, at + latent))), 1);
});


$("more-digits").addEventListener("click", () => {
  view.galleryStart = (view.galleryStart + GALLERY) % training.data.testCount();
  drawGallery();
});
for (const radio of document.querySelectorAll('input[name="slot"]')) {
  radio.addEventListener("change", () => { view.slot = radio.value; });
}
for (const radio of document.querySelectorAll('input[name="path"]')) {
  radio.addEventListener("change", () => refreshInterpolation());
}
$("scrub").addEventListener("input", () => refreshScrub());
$("clear-pad").addEventListener("click", () => { pad.clear(); updateDrawing(); });
$("use-drawing").addEventListener("click", () => {
  const { width, height } = $("pad");
  pick({ x: wasm.centreDigit(pad.ink(), width, height, ...imageShape()), label: "your drawing" });
});
