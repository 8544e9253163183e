// The settings panel: the model's configuration as a form, checked by the same validation as
// the Rust API with each error next to its field; only the chosen architecture's, likelihood's
// and latent type's fields are shown (the hierarchy of latents, `hvae`, has its own latents
// and likelihood: only its schedule is set here). Apply (the form's submit) starts a fresh model.
import { $, imageShape, messageOf, wasm } from "../page.js";
import { resetModel } from "../model.js";

const INTEGER_FIELDS = ["latent", "batch_size"];
const NUMBER_FIELDS = ["beta", "learning_rate"];
// Errors about the layers are shown under the architecture's fields.
const FIELD_ERRORS = { decoder: "encoder", architecture: "encoder", channels: "encoder", dense: "encoder", hidden: "encoder", image: "encoder", graph: "encoder", final_learning_rate: "learning_rate" };
// The learning rate each kind of model starts with (the hierarchy's is the quality run's peak).
const LEARNING_RATES = { stack: "0.001", hvae: "0.002" };

export function showFieldError(err) {
  const target = $(`${FIELD_ERRORS[err.field] || err.field}-error`) || $("settings-error");
  target.textContent = err.message;
  const input = document.querySelector(`#settings [name="${err.field}"]`);
  if (input) input.setAttribute("aria-invalid", "true");
}

function clearFieldErrors() {
  for (const p of document.querySelectorAll("#settings .field-error")) p.textContent = "";
  for (const i of document.querySelectorAll("#settings [aria-invalid]")) i.removeAttribute("aria-invalid");
}

// The form as a trainer configuration: { ok, config }, showing any error next to its field.
export function readSettings() {
  clearFieldErrors();
  const form = $("settings").elements;
  const config = {};
  const problems = [];
  const hvae = form.kind.value === "hvae";
  for (const name of hvae ? ["batch_size", "kl_warmup_steps"] : INTEGER_FIELDS) {
    const v = Number(form[name].value);
    if (form[name].value.trim() === "" || !Number.isInteger(v)) problems.push({ field: name, message: "enter a whole number" });
    config[name] = v;
  }
  for (const name of hvae ? ["learning_rate"] : NUMBER_FIELDS) {
    const v = Number(form[name].value);
    if (form[name].value.trim() === "" || !Number.isFinite(v)) problems.push({ field: name, message: "enter a number" });
    config[name] = v;
  }
  const sizes = (field, example) => {
    const list = form[field].value.split(/[\s,]+/).filter(Boolean).map(Number);
    if (!list.every((h) => Number.isInteger(h) && h > 0)) {
      problems.push({ field: "encoder", message: `enter whole numbers separated by commas, e.g. ${example}` });
    }
    return list;
  };
  if (hvae) {
    config.architecture = { kind: "hvae" };
    // Training in the page has no planned end: the learning rate stays where it is set.
    config.final_learning_rate = config.learning_rate;
  } else if (form.kind.value === "conv") {
    const dense = Number(form.dense.value);
    if (!Number.isInteger(dense) || dense < 1) problems.push({ field: "encoder", message: "enter the dense width as a whole number" });
    config.architecture = { kind: "conv", channels: sizes("channels", "32, 64"), dense };
  } else {
    config.architecture = { kind: "mlp", hidden: sizes("hidden", "400 or 512, 256"), activation: form.activation.value };
  }
  config.image = imageShape();
  if (hvae) return validated(config, problems);
  const number = (name, field) => {
    const v = Number(form[name].value);
    if (form[name].value.trim() === "" || !Number.isFinite(v)) problems.push({ field, message: `enter a number for ${name}` });
    return v;
  };
  const kind = form.likelihood.value;
  config.likelihood = kind === "gaussian" ? { kind, sigma: number("sigma", "likelihood") }
    : kind === "gaussian_var" ? { kind, variance_floor: number("variance_floor", "likelihood") }
    : { kind };
  config.latent_type = form.latent_kind.value === "categorical"
    ? { kind: "categorical", ...Object.fromEntries(["classes", "tau_start", "tau_floor", "tau_rate"].map((n) => [n, number(n, "latent_type")])) }
    : { kind: "gaussian" };
  return validated(config, problems);
}

// What a model made without a click on Apply starts with (the first model, a restart with no
// weights kept): the form's settings if they are valid, or else the reference model, whose
// settings then replace what the form held (a setting typed half-way while the page starts
// must not leave it without a model).
export function settingsOrReference() {
  const parsed = readSettings();
  return parsed.ok ? parsed.config : { architecture: { kind: "mlp", hidden: [400], activation: "relu" }, image: imageShape() };
}

// `{ ok, config }` after the Rust API's check, every problem shown next to its field.
function validated(config, problems) {
  if (problems.length === 0 && wasm) {
    try {
      wasm.validateConfig(config);
    } catch (err) {
      problems.push(err.field ? err : { field: "settings", message: messageOf(err) });
    }
  }
  problems.forEach(showFieldError);
  return { ok: problems.length === 0, config };
}

export function writeSettings(c) {
  const form = $("settings").elements;
  // The trainer holds f32s: show 0.001, not 0.0010000000474974513.
  const short = (v) => String(Number(v.toPrecision(6)));
  form.latent.value = c.latent;
  const arch = c.architecture;
  if (arch) {
    form.kind.value = arch.kind;
    if (arch.kind === "hvae") {
      form.kl_warmup_steps.value = c.kl_warmup_steps;
    } else if (arch.kind === "conv") {
      form.channels.value = arch.channels.join(", ");
      form.dense.value = arch.dense;
    } else {
      form.hidden.value = arch.hidden.join(", ");
      form.activation.value = arch.activation;
    }
  }
  if (c.beta !== undefined) form.beta.value = short(c.beta);
  form.learning_rate.value = short(c.learning_rate);
  form.batch_size.value = c.batch_size;
  form.likelihood.value = c.likelihood.kind;
  if (c.likelihood.kind === "gaussian") form.sigma.value = short(c.likelihood.sigma);
  if (c.likelihood.kind === "gaussian_var") form.variance_floor.value = short(c.likelihood.variance_floor);
  form.latent_kind.value = c.latent_type.kind;
  if (c.latent_type.kind === "categorical") {
    form.classes.value = c.latent_type.classes;
    for (const n of ["tau_start", "tau_floor", "tau_rate"]) form[n].value = short(c.latent_type[n]);
  }
  showChosenFields();
  clearFieldErrors();
}

// Only the fields of the chosen architecture, likelihood and latent type are shown: the
// groups marked data-<choice> whose value is the selected option of the field named here.
const CHOICES = { arch: "kind", likelihood: "likelihood", latent: "latent_kind" };
function showChosenFields() {
  const form = $("settings").elements;
  for (const [choice, field] of Object.entries(CHOICES)) {
    for (const group of document.querySelectorAll(`#settings [data-${choice}]`)) group.hidden = group.dataset[choice] !== form[field].value;
  }
  // The layer stacks' own fields: the hierarchy's latents and likelihood are its own.
  for (const group of document.querySelectorAll("#settings [data-stack]")) group.hidden = form.kind.value === "hvae";
}

for (const field of Object.values(CHOICES)) $("settings").elements[field].addEventListener("change", showChosenFields);
// Choosing the hierarchy, or leaving it, moves an untouched learning rate to the new kind's own.
$("settings").elements.kind.addEventListener("change", () => {
  const form = $("settings").elements;
  const [from, to] = form.kind.value === "hvae" ? ["stack", "hvae"] : ["hvae", "stack"];
  if (Number(form.learning_rate.value) === Number(LEARNING_RATES[from])) form.learning_rate.value = LEARNING_RATES[to];
});
$("settings").addEventListener("submit", (e) => {
  e.preventDefault();
  resetModel();
});
