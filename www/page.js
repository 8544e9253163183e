// What every panel shares: the one owner of the model and its training (`training`), what the
// views show beyond the model (`view`), the page's wasm module and the trainer's worker, the
// data's image size, and the one error path. The panels (panels/*.js) each own their part of
// the page and read the model from here; model.js replaces it.
import { Remote } from "./remote.js";
import { Training } from "./training.js";
import { drawDigits, SIDE } from "./views.js";

export const $ = (id) => document.getElementById(id);

export const training = new Training();

// What the panels show beyond the model: their own choices and what they computed from it.
export const view = {
  sampleSeed: 1,
  variationSeed: 1,
  galleryStart: 0,
  slot: "a",
  picks: { a: null, b: null }, // { x: Float32Array(784), label }
  codes: null, // { a, b }: the picks' codes (mu, or class probabilities)
  usage: null, // average KL per latent dimension (or categorical variable), most used first: [{ dim, kl }]
  latent: { variables: 0, classes: 0 }, // the model's latent space; classes 0 = Gaussian
};

export let wasm; // the page's wasm-bindgen module: the views' pure functions
export let remote; // the trainer's worker (remote.js): devices, data and trainers live there

// Once the page's wasm module is loaded: the trainer's worker starts, loading the same module.
export function connect(bindings) {
  wasm = bindings;
  remote = new Remote();
  training.remote = remote;
}

export const messageOf = (err) => (err && err.message) || String(err);

// The one error path (model.js's `fail`), given at startup.
let failure = (err) => console.warn(err);
export function onFailure(fail) {
  failure = fail;
}
export const fail = (err) => failure(err);

// Wraps an action on the model (a view's refresh, Save) so that whatever it throws takes the
// one error path, `fail`, instead of being lost in a promise. Without a model yet, there is
// nothing to do: the views are drawn once it is made.
export function failsSafely(action) {
  return async (...args) => {
    if (!training.trainer) return;
    try {
      await action(...args);
    } catch (err) {
      fail(err);
    }
  };
}

// Runs `fn` as a change of the model, its device or its data (Training.change): after every
// change asked for before it, its errors taking the one error path.
export function act(fn) {
  return training.change(fn).catch(fail);
}

// The data's image size: every view draws images of this shape.
export const imageShape = () => (training.data ? [training.data.rows(), training.data.cols()] : [SIDE, SIDE]);
export const imagePixels = () => imageShape()[0] * imageShape()[1];
export const draw = (canvas, images, cols) => drawDigits(canvas, images, cols, ...imageShape());
