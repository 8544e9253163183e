"""Reads a .safetensors checkpoint with the `safetensors` package (as a PyTorch user would) and
prints its metadata and each tensor's name, shape, dtype and sum as one JSON object, so tests can
check that the page's files load outside the page."""
import json
import sys

from safetensors import safe_open

with safe_open(sys.argv[1], framework="numpy") as f:
    out = {"metadata": f.metadata(), "tensors": {}}
    for name in f.keys():
        t = f.get_tensor(name)
        out["tensors"][name] = {"shape": list(t.shape), "dtype": str(t.dtype), "sum": float(t.astype("float64").sum())}
print(json.dumps(out))
