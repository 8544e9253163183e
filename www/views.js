// Drawing: digit grids, the loss chart and the latent scatter. Plain canvas 2D, no state beyond
// what each view needs to redraw itself.

export const SIDE = 28;

// Draws images (a flat array of n images of `height` x `width` values in [0, 1]; MNIST's 28x28
// unless given) into `canvas` as a grid of `cols` columns, ink white on black like MNIST. The
// canvas is resized to fit.
export function drawDigits(canvas, images, cols, height = SIDE, width = height) {
  const size = height * width;
  const n = Math.floor(images.length / size);
  const rows = Math.max(1, Math.ceil(n / cols));
  if (canvas.width !== cols * width || canvas.height !== rows * height) {
    canvas.width = cols * width;
    canvas.height = rows * height;
  }
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(cols * width, rows * height);
  for (let k = 0; k < n; k++) {
    const ox = (k % cols) * width, oy = Math.floor(k / cols) * height;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const v = Math.round(255 * Math.min(1, Math.max(0, images[k * size + y * width + x])));
        const p = 4 * ((oy + y) * cols * width + ox + x);
        img.data[p] = img.data[p + 1] = img.data[p + 2] = v;
        img.data[p + 3] = 255;
      }
    }
  }
  ctx.putImageData(img, 0, 0);
  canvas.dataset.drawn = "";
}

// A view not drawn yet: the canvas is cleared to its pattern (the style of `.pixels` not
// [data-drawn]) with `text` across it, saying what it waits for.
export function drawWaiting(canvas, text) {
  delete canvas.dataset.drawn;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = "14px system-ui, sans-serif";
  ctx.fillStyle = "#333";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  // Words on lines that fit the canvas.
  const lines = [];
  for (const word of text.split(" ")) {
    const last = lines.length ? `${lines.at(-1)} ${word}` : word;
    if (lines.length && ctx.measureText(last).width <= canvas.width - 16) lines[lines.length - 1] = last;
    else lines.push(word);
  }
  lines.forEach((line, i) => ctx.fillText(line, canvas.width / 2, canvas.height / 2 + (i - (lines.length - 1) / 2) * 18));
}

// Ten colours for digit labels 0-9 (Tableau 10), distinguishable and readable on white.
export const LABEL_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#7f7f7f"];

// A scatter of 2-D points coloured by label, both axes spanning [lo, hi] (by default the
// Gaussian prior's -3.5..3.5), with grid lines at `lines` (by default the axes through 0).
export function drawScatter(canvas, xs, ys, labels, lo = -3.5, hi = 3.5, lines = [0]) {
  const ctx = canvas.getContext("2d");
  const { width: w, height: h } = canvas;
  const px = (v) => ((v - lo) / (hi - lo)) * w;
  const py = (v) => h - ((v - lo) / (hi - lo)) * h;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = "#ddd";
  ctx.beginPath();
  for (const v of lines) {
    ctx.moveTo(px(v), 0); ctx.lineTo(px(v), h);
    ctx.moveTo(0, py(v)); ctx.lineTo(w, py(v));
  }
  ctx.stroke();
  ctx.globalAlpha = 0.7;
  for (let i = 0; i < xs.length; i++) {
    ctx.fillStyle = LABEL_COLOURS[labels[i] % 10];
    ctx.fillRect(px(xs[i]) - 1.5, py(ys[i]) - 1.5, 3, 3);
  }
  ctx.globalAlpha = 1;
}

const SERIES = [
  { key: "loss", colour: "#1f4e9c", label: "loss" },
  { key: "reconstruction", colour: "#2a9d8f", label: "reconstruction" },
  { key: "kl", colour: "#e76f51", label: "KL" },
];
// A hierarchy's KL per group (`klGroups`, top first), dashed.
export const GROUP_COLOURS = ["#9c4fd6", "#d4a017", "#5c6b73", "#c2185b"];

// The loss chart: training series against epochs, test -ELBO as dots; hovering shows the
// nearest point's values in `tip`.
export class LossChart {
  constructor(canvas, tip) {
    this.canvas = canvas;
    this.tip = tip;
    // What the training loss and the test dots are called in the tip (e.g. relaxed / discrete).
    this.labels = { loss: "loss", test: "test −ELBO" };
    // A hierarchy's groups of latents, top first: their KLs are drawn too.
    this.groups = [];
    this.clear();
    canvas.addEventListener("pointermove", (e) => this.hover(e));
    canvas.addEventListener("pointerleave", () => { tip.hidden = true; });
  }

  clear() {
    this.train = []; // { epoch, loss, reconstruction, kl, klGroups? }
    this.test = []; // { epoch, nelbo }
    this.draw();
  }

  addTrain(point) {
    this.train.push(point);
    // Keep the chart cheap to draw: halve the resolution of long histories.
    if (this.train.length > 2000) {
      this.train = this.train.filter((_, i) => i % 2 === 0);
    }
    this.draw();
  }

  addTest(point) {
    this.test.push(point);
    this.draw();
  }

  frame() {
    const { width: w, height: h } = this.canvas;
    const pad = { l: 44, r: 10, t: 10, b: 28 };
    const xmax = Math.max(1, ...this.train.map((p) => p.epoch), ...this.test.map((p) => p.epoch));
    // Skip the first few points when scaling: the untrained loss would flatten the rest.
    const values = this.train.slice(Math.min(3, this.train.length - 1)).flatMap((p) => [p.loss, p.reconstruction, p.kl, ...(p.klGroups ?? [])])
      .concat(this.test.map((p) => p.nelbo)).filter(Number.isFinite);
    // The y axis spans round ticks from 0 (or below it: a density on continuous pixels can
    // be negative) to above the data; the x axis ends at the last epoch.
    const yticks = niceTicks(values.length ? Math.max(...values) : 1, 5, values.length ? Math.min(...values) : 0);
    const [ymin, ymax] = [yticks[0], yticks[yticks.length - 1]];
    return {
      w, h, pad, xmax, ymax, yticks, xticks: niceTicks(xmax, 6).filter((e) => e <= xmax),
      x: (e) => pad.l + (e / xmax) * (w - pad.l - pad.r),
      y: (v) => pad.t + (1 - (Math.min(Math.max(v, ymin), ymax) - ymin) / (ymax - ymin)) * (h - pad.t - pad.b),
    };
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    const f = this.frame();
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, f.w, f.h);
    ctx.strokeStyle = "#ccc";
    ctx.fillStyle = "#555";
    ctx.font = "11px system-ui, sans-serif";
    ctx.beginPath();
    this.tickLabels = { x: [], y: [] }; // the labels as drawn, for tests and the curious
    for (const v of f.yticks) {
      const y = f.y(v), label = tickLabel(v, f.yticks);
      ctx.moveTo(f.pad.l, y); ctx.lineTo(f.w - f.pad.r, y);
      ctx.fillText(label, 4, y + 4);
      this.tickLabels.y.push(label);
    }
    ctx.stroke();
    ctx.fillText("epoch", f.w - 44, f.h - 6);
    for (const e of f.xticks) {
      const label = tickLabel(e, f.xticks);
      ctx.fillText(label, f.x(e) - 3 * label.length, f.h - 14);
      this.tickLabels.x.push(label);
    }
    for (const s of SERIES) {
      ctx.strokeStyle = s.colour;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      this.train.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, f.x(p.epoch), f.y(p[s.key])));
      ctx.stroke();
    }
    ctx.setLineDash([4, 3]);
    this.groups.forEach((_, g) => {
      const points = this.train.filter((p) => p.klGroups && Number.isFinite(p.klGroups[g]));
      ctx.strokeStyle = GROUP_COLOURS[g % GROUP_COLOURS.length];
      ctx.beginPath();
      points.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, f.x(p.epoch), f.y(p.klGroups[g])));
      ctx.stroke();
    });
    ctx.setLineDash([]);
    ctx.fillStyle = "#111";
    for (const p of this.test) {
      ctx.beginPath();
      ctx.arc(f.x(p.epoch), f.y(p.nelbo), 3.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  hover(e) {
    if (!this.train.length) return;
    const rect = this.canvas.getBoundingClientRect();
    const f = this.frame();
    const mx = ((e.clientX - rect.left) / rect.width) * f.w;
    const epoch = ((mx - f.pad.l) / (f.w - f.pad.l - f.pad.r)) * f.xmax;
    const near = (ps) => ps.reduce((best, p) => (Math.abs(p.epoch - epoch) < Math.abs(best.epoch - epoch) ? p : best), ps[0]);
    const p = near(this.train);
    let text = `epoch ${p.epoch.toFixed(2)}: ${this.labels.loss} ${p.loss.toFixed(1)}, reconstruction ${p.reconstruction.toFixed(1)}, KL ${p.kl.toFixed(1)}`;
    if (p.klGroups) text += ` (${this.groups.map((g, i) => `${g} ${p.klGroups[i]?.toFixed(1)}`).join(", ")})`;
    if (this.test.length) {
      const t = near(this.test);
      text += `; ${this.labels.test} ${t.nelbo.toFixed(1)} at epoch ${t.epoch.toFixed(0)}`;
    }
    this.tip.textContent = text;
    this.tip.hidden = false;
  }
}

// Tick values from 0 (or below, down to `min`) to at least `max`, about `count` of them,
// spaced 1, 2 or 5 x 10^n apart (the rule plotting libraries use, e.g. d3's ticks), so labels
// read as round numbers.
export function niceTicks(max, count, min = 0) {
  const [lo, hi] = [Math.min(0, min), Math.max(0, max)];
  const raw = (hi > lo ? hi - lo : 1) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const ratio = raw / magnitude;
  const step = magnitude * (ratio >= Math.sqrt(50) ? 10 : ratio >= Math.sqrt(10) ? 5 : ratio >= Math.sqrt(2) ? 2 : 1);
  const first = Math.floor(lo / step + 1e-9);
  const n = Math.max(1, Math.ceil(hi / step - 1e-9) - first);
  // Multiplying (not accumulating) keeps 0.1 * 3 from printing as 0.30000000000000004.
  return Array.from({ length: n + 1 }, (_, i) => Number(((first + i) * step).toPrecision(12)));
}

// A tick's label with as many decimals as the spacing of its axis needs.
function tickLabel(v, ticks) {
  const step = ticks.length > 1 ? ticks[1] - ticks[0] : 1;
  return v.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
}

// A drawing pad: white ink on black, read back as ink values in [0, 1].
export class DrawingPad {
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { willReadFrequently: true });
    this.empty = true;
    this.clear();
    let last = null;
    const at = (e) => {
      const r = canvas.getBoundingClientRect();
      return [((e.clientX - r.left) / r.width) * canvas.width, ((e.clientY - r.top) / r.height) * canvas.height];
    };
    canvas.addEventListener("pointerdown", (e) => {
      canvas.setPointerCapture(e.pointerId);
      last = at(e);
      this.stroke(last, last);
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!last) return;
      const p = at(e);
      this.stroke(last, p);
      last = p;
    });
    const end = () => { if (last) { last = null; onChange(); } };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
  }

  stroke(from, to) {
    const ctx = this.ctx;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = this.canvas.width / 12;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(...from);
    ctx.lineTo(...to);
    ctx.stroke();
    this.empty = false;
  }

  clear() {
    this.ctx.fillStyle = "#000";
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.empty = true;
  }

  ink() {
    const { width: w, height: h } = this.canvas;
    const data = this.ctx.getImageData(0, 0, w, h).data;
    const ink = new Float32Array(w * h);
    for (let i = 0; i < w * h; i++) ink[i] = data[4 * i] / 255;
    return ink;
  }
}
