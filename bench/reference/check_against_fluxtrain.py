#!/usr/bin/env python3
"""Checks that flux_step.py's model computes what fluxtrain's does: same weights, same inputs,
float64 forward and backward, output and every gradient compared.

fluxtrain side: bench/reference/fluxtrain_probe.cpp, built against a built tree, e.g.

  c++ -O1 -std=gnu++17 -D_GLIBCXX_USE_CXX11_ABI=1 -DFMT_SHARED -Isrc \
      -isystem /usr/include/torch/csrc/api/include bench/reference/fluxtrain_probe.cpp \
      -o /tmp/fluxtrain_probe build/libfluxtrain_bench.a build/libfluxtrain_model.a \
      build/libfluxtrain_io.a build/libfluxtrain_core.a /usr/lib/x86_64-linux-gnu/libtorch.so \
      -Wl,--no-as-needed /usr/lib/x86_64-linux-gnu/libtorch_cpu.so \
      /usr/lib/x86_64-linux-gnu/libc10.so -lfmt -lyaml-cpp -lpthread
  /tmp/fluxtrain_probe --dump /tmp/tiny.safetensors tiny

then (needs torch; torch 1.13 is enough, CPU):

  python3 bench/reference/check_against_fluxtrain.py /tmp/tiny.safetensors
"""

import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flux_step  # noqa: E402


def read_safetensors(path):
    """{name: tensor} and metadata, by the format (8-byte header length, JSON header, data)."""
    import torch

    dtypes = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    with open(path, "rb") as fh:
        data = fh.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        buf = bytearray(data[base + a : base + b])
        t = torch.frombuffer(buf, dtype=dtypes[info["dtype"]]) if b > a else torch.zeros(0, dtype=dtypes[info["dtype"]])
        out[name] = t.reshape(info["shape"])
    return out, meta


def check(path, tol=1e-9):
    import torch

    tensors, meta = read_safetensors(path)
    model_name = meta["model"]
    p = flux_step.PRESETS[model_name]["flux"]
    model = flux_step.modules().Flux(p, dtype=torch.float64)
    state = {k[len("param.") :]: v for k, v in tensors.items() if k.startswith("param.")}
    missing, unexpected = model.load_state_dict(state, strict=True), None  # strict: names must match
    guidance = tensors["in.guidance"] if p["guidance_embed"] else None
    pred = model(tensors["in.img"], tensors["in.img_ids"], tensors["in.txt"], tensors["in.txt_ids"],
                 tensors["in.t"], tensors["in.y"], guidance)
    pred.pow(2).mean().backward()
    ref = tensors["out.pred"]
    scale = ref.abs().max().item()
    worst = ("out.pred", (pred.detach() - ref).abs().max().item() / max(scale, 1e-30))
    n_grads = 0
    for name, param in model.named_parameters():
        g = tensors.get("grad." + name)
        if g is None:
            assert param.grad is None or param.grad.abs().max().item() == 0, name
            continue
        n_grads += 1
        err = (param.grad - g).abs().max().item() / max(g.abs().max().item(), 1e-30)
        if err > worst[1]:
            worst = ("grad." + name, err)
    ok = worst[1] < tol
    print(f"{model_name}: output {tuple(pred.shape)} (max |pred| {scale:.3g}) and {n_grads} gradients; "
          f"largest relative difference {worst[1]:.2e} at {worst[0]} -> {'OK' if ok else 'MISMATCH'}")
    return ok


if __name__ == "__main__":
    results = [check(p) for p in sys.argv[1:]]
    if not results:
        print(__doc__)
        sys.exit(2)
    sys.exit(0 if all(results) else 1)
