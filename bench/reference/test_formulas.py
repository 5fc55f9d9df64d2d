#!/usr/bin/env python3
"""Torch-free checks of bench/reference/: flux_step.py's parameter-count and FLOP formulas against
fluxtrain's numbers, its peak table and percentiles against fluxtrain's, and compare.py's table.
Plain python3 (no torch):  python3 bench/reference/test_formulas.py

The pinned numbers are what fluxtrain's C++ gives (bench/reference/fluxtrain_probe.cpp prints
them; `fluxtrain info --model M` prints the counts). Where build/fluxtrain exists its `info`
output is checked too.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import compare  # noqa: E402
import flux_step  # noqa: E402

PARAMS = {
    "flux-dev": 11_901_408_320,
    "flux-schnell": 11_891_178_560,
    "tiny": 2_304_560,
    "tiny-guidance": 2_353_968,
}
# training_flops_per_image(preset, resolution) from fluxtrain (printed with %.17g).
TRAIN_FLOPS = {
    ("flux-dev", 256): 31043093004288,
    ("flux-dev", 512): 64507800453120,
    ("flux-dev", 1024): 223153960255488,
    ("flux-schnell", 256): 20420235362304,
    ("flux-schnell", 512): 53058698477568,
    ("flux-schnell", 1024): 208399880945664,
    ("tiny", 32): 600637440,
    ("tiny", 64): 2582446080,
    ("tiny-guidance", 32): 600932352,
}

failures = []
passed = [0]


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    passed[0] += bool(cond)
    if not cond:
        failures.append(what)


check("torch" not in sys.modules, "flux_step and compare import without torch")

for name, n in PARAMS.items():
    got = flux_step.parameter_count(flux_step.PRESETS[name]["flux"])
    check(got == n, f"{name}: {got:,} parameters == fluxtrain's {n:,}")
for name, n in flux_step.EXPECTED_PARAMS.items():
    check(PARAMS[name] == n, f"{name}: EXPECTED_PARAMS matches DESIGN.md")

for (name, res), flops in TRAIN_FLOPS.items():
    got = flux_step.training_flops_per_image(flux_step.PRESETS[name], res)
    check(got == flops, f"{name} {res}px: {got:.6g} training FLOPs/image == fluxtrain's {flops:.6g}")
got = flux_step.training_flops_per_image(flux_step.PRESETS["flux-schnell"], 256)
check(abs(got / 20.4e12 - 1) < 0.01, "DESIGN.md: flux-schnell 256 px ~ 20.4 TFLOP per training sample")
check(flux_step.image_tokens_for(flux_step.PRESETS["flux-dev"], 512) == 1024, "512 px -> 1024 tokens")
check(flux_step.image_tokens_for(flux_step.PRESETS["tiny"], 32) == 64, "tiny 32 px -> 64 tokens")

check(flux_step.datasheet_peak_tflops("NVIDIA H200", "bf16") == 989.0, "H200 bf16 989")
check(flux_step.datasheet_peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0, "H100 SXM bf16 989")
check(flux_step.datasheet_peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0, "H100 PCIe bf16 756")
check(flux_step.datasheet_peak_tflops("NVIDIA H100 80GB HBM3", "fp32") == 67.0, "H100 fp32 67")
check(flux_step.datasheet_peak_tflops("CPU: AMD EPYC", "bf16") is None, "CPU: no peak")

s = flux_step.summarize_ms([100, 200, 300])
check((s["mean"], s["p50"], s["min"], s["max"]) == (200, 200, 100, 300), "summary mean/p50/min/max")
s = flux_step.summarize_ms([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
check(abs(s["p90"] - 91.0) < 1e-9, "p90 interpolates between ranks as fluxtrain's stats.cpp")

a = flux_step.parse_args(["--model", "flux-dev"])
check((a.precision, a.weights, a.optimizer_state) == ("bf16", "bf16", "bf16"),
      "defaults follow configs/bench/gpu-train.yaml (bf16 compute, weights, moments)")
check(flux_step.ADAMW == dict(lr=1e-5, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
      "AdamW as fluxtrain's bench train point")

# fluxtrain's own count, where the binary is built.
binary = os.path.join(ROOT, "build", "fluxtrain")
if os.access(binary, os.X_OK):
    for name in PARAMS:
        out = subprocess.run([binary, "info", "--model", name], capture_output=True, text=True).stdout
        m = re.search(r"^total\s+([\d,]+)", out, re.M)
        check(m is not None and int(m.group(1).replace(",", "")) == PARAMS[name],
              f"fluxtrain info --model {name}: total {m.group(1) if m else '?'}")
else:
    print("skip fluxtrain info (no build/fluxtrain)")

# compare.py on a made-up results.json and reference records.
with tempfile.TemporaryDirectory() as d:
    bench = {"bench": {"mode": "train"}, "points": [
        {"status": "ok", "settings": {"model": "flux-dev", "resolution": "512", "batch_size": "2",
                                      "precision": "bf16", "weights": "bf16", "optimizer_state": "bf16",
                                      "method": "full", "grad_accum": "1"},
         "figures": {"images_per_s": 3.0, "time_ms": {"p50": 660.0}}, "device_name": "NVIDIA H200"},
        {"status": "ok", "settings": {"model": "flux-dev", "resolution": "512", "batch_size": "1",
                                      "precision": "bf16", "weights": "bf16", "optimizer_state": "bf16"},
         "figures": {"images_per_s": 2.0}},
        {"status": "oom", "error": "CUDA out of memory", "settings": {
            "model": "flux-dev", "resolution": "512", "batch_size": "4", "precision": "bf16",
            "weights": "bf16", "optimizer_state": "bf16"}},
    ]}
    os.makedirs(os.path.join(d, "bench-train", "id"))
    with open(os.path.join(d, "bench-train", "id", "results.json"), "w") as fh:
        json.dump(bench, fh)
    base = dict(model="flux-dev", resolution=512, batch_size=2, precision="bf16", weights="bf16",
                optimizer_state="bf16", status="ok", time_ms={"p50": 800.0})
    refs = []
    for mode, ips in (("eager", 2.5), ("compile", 4.0)):
        p = os.path.join(d, f"{mode}.json")
        with open(p, "w") as fh:
            json.dump(dict(base, mode=mode, images_per_s=ips), fh)
        refs.append(p)
    md = compare.render(compare.load_fluxtrain([d]), compare.load_reference(refs))
    row = [l for l in md.splitlines() if l.startswith("| flux-dev | 512 | 2 |")]
    check(len(row) == 1 and "| no | 3.000 | 2.500 | 4.000 | 1.20× | 0.75× |" in row[0], "compare.py ratios: " + (row[0] if row else md))
    check(any(l.startswith("| flux-dev | 512 | 4 |") and "| oom |" in l for l in md.splitlines()), "compare.py shows oom")
    check(compare.pick(compare.load_fluxtrain([d]), 2, "flux-dev", 512) ==
          [("flux-dev", 512, 2, "bf16", "bf16", "bf16", "false"), ("flux-dev", 512, 1, "bf16", "bf16", "bf16", "false")],
          "compare.py --pick: best ok points first")

print(f"{passed[0]} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
