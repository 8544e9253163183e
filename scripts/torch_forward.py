"""One forward pass of a checkpoint's model in numpy, written from PyTorch's documented formulas
(not from our code), so that a test can check that our weights mean what PyTorch users take them
to mean: nn.Linear (y = x W^T + b, W [out, in]), nn.Conv2d (cross-correlation, W [out, in, k, k]),
nn.ConvTranspose2d (W [in, out, k, k]), nn.Flatten, nn.Unflatten, ReLU, Tanh; the Gaussian
heads mu and logvar, or the categorical logits (softmax over each variable's classes); the
decoder's output read by the likelihood (Bernoulli: sigmoid of logits; Gaussian: the mean
itself; learned variance: mean logits, then log-variances clamped at log(floor)).

    torch_forward.py CHECKPOINT < {"x": [[pixels]...], "z": [[code]...]}

prints {"mu", "logvar"} or {"probabilities"} for x, and {"mean", "std"} for z, as JSON.
"""
import json
import sys

import numpy as np
from safetensors.numpy import load_file


def linear(x, w, b):
    return x @ w.T + b


def conv2d(x, w, b, stride, padding):
    # out[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * xpad[n, c, i*stride + p, j*stride + q]
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwpq,ocpq->nohw", windows, w) + b[None, :, None, None]


def conv_transpose2d(x, w, b, stride, padding):
    # Each input pixel (i, j) adds w[c, o, p, q] * x[n, c, i, j] at (i*stride - padding + p,
    # j*stride - padding + q); the output is (H - 1) * stride - 2 * padding + k high.
    n, _, h, wd = x.shape
    k = w.shape[2]
    full = np.zeros((n, w.shape[1], (h - 1) * stride + k, (wd - 1) * stride + k))
    for p in range(k):
        for q in range(k):
            full[:, :, p:p + (h - 1) * stride + 1:stride, q:q + (wd - 1) * stride + 1:stride] += \
                np.einsum("nchw,co->nohw", x, w[:, :, p, q])
    oh, ow = (h - 1) * stride - 2 * padding + k, (wd - 1) * stride - 2 * padding + k
    return full[:, :, padding:padding + oh, padding:padding + ow] + b[None, :, None, None]


ACTIVATIONS = {"identity": lambda v: v, "relu": lambda v: np.maximum(v, 0.0), "tanh": np.tanh}


def sequential(prefix, layers, x, tensors):
    """The layers as the modules of an nn.Sequential named `prefix`: each activation other than
    identity is a module of its own, so it takes an index too."""
    index = 0
    for layer in layers:
        name = f"{prefix}.{index}"
        kind = layer["type"]
        if kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "reshape":
            x = x.reshape(x.shape[0], *layer["shape"])
        else:
            w, b = tensors[f"{name}.weight"], tensors[f"{name}.bias"]
            if kind == "linear":
                x = linear(x, w, b)
            elif kind == "conv2d":
                x = conv2d(x, w, b, layer["stride"], layer["padding"])
            elif kind == "conv_transpose2d":
                x = conv_transpose2d(x, w, b, layer["stride"], layer["padding"])
            else:
                raise ValueError(f"unknown layer {kind}")
        activation = layer.get("activation", "identity")
        x = ACTIVATIONS[activation](x)
        index += 1 + (activation != "identity")
    return x


def shaped(rows, shape):
    """Rows of flat values as a batch of the model's input shape ([n] or [c, h, w])."""
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), *shape)


def main():
    path = sys.argv[1]
    tensors = {k: v.astype(np.float64) for k, v in load_file(path).items()}
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    config = json.loads(header["__metadata__"]["config"])
    request = json.load(sys.stdin)
    out = {}

    h = sequential("encoder", config["encoder"], shaped(request["x"], config["input"]), tensors)
    h = h.reshape(h.shape[0], -1)
    latent = config["latent_type"]
    if latent["kind"] == "gaussian":
        out["mu"] = linear(h, tensors["mu.weight"], tensors["mu.bias"]).ravel().tolist()
        out["logvar"] = linear(h, tensors["logvar.weight"], tensors["logvar.bias"]).ravel().tolist()
    else:
        logits = linear(h, tensors["logits.weight"], tensors["logits.bias"]).reshape(h.shape[0], -1, latent["classes"])
        e = np.exp(logits - logits.max(axis=2, keepdims=True))
        out["probabilities"] = (e / e.sum(axis=2, keepdims=True)).ravel().tolist()

    z = np.asarray(request["z"], dtype=np.float64)
    o = sequential("decoder", config["decoder"], z, tensors).reshape(z.shape[0], -1)
    likelihood = config["likelihood"]
    if likelihood["kind"] == "bernoulli":
        mean = 1.0 / (1.0 + np.exp(-o))
        std = np.sqrt(mean * (1.0 - mean))
    elif likelihood["kind"] == "gaussian":
        mean = np.clip(o, 0.0, 1.0)
        std = np.full_like(o, likelihood["sigma"])
    else:  # gaussian_var: the first half (or channel) are the means' logits, then log-variances
        logits, logvar = np.split(o, 2, axis=1)
        mean = 1.0 / (1.0 + np.exp(-logits))
        std = np.exp(0.5 * np.maximum(logvar, np.log(likelihood["variance_floor"])))
    out["mean"] = mean.ravel().tolist()
    out["std"] = std.ravel().tolist()
    print(json.dumps(out))


main()
