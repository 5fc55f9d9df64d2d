#!/usr/bin/env python3
"""fluxtrain vs the plain-PyTorch reference (bench/reference/flux_step.py): a markdown table.

  python3 bench/reference/compare.py --fluxtrain OUT/bench-train --reference OUT/reference/*.json \
      --out OUT/reference.md

--fluxtrain takes `fluxtrain bench` results.json files or folders holding them (searched
recursively; train-mode benches only). Rows are matched on (model, resolution, batch size,
precision, weights, optimizer state); the ratios are fluxtrain's images/s over the reference's.

  python3 bench/reference/compare.py --fluxtrain OUT/bench-train --pick 2 --resolution 512

prints the best N measured fluxtrain points (by images/s), one `model resolution batch precision
weights optimizer_state gradient_checkpointing` line each, for scripts/gpu-check.sh to run the reference on.
Standard library only.
"""

import argparse
import glob
import json
import os
import sys


def find_results(paths):
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += glob.glob(os.path.join(p, "**", "results.json"), recursive=True)
        elif os.path.isfile(p):
            files.append(p)
    return sorted(set(files), key=os.path.getmtime)


def key_of(d):
    return (
        str(d.get("model", "")),
        int(d.get("resolution") or 0),
        int(d.get("batch_size") or 0),
        str(d.get("precision", "")),
        str(d.get("weights") or d.get("precision", "")),
        str(d.get("optimizer_state") or d.get("weights") or d.get("precision", "")),
        "true" if str(d.get("gradient_checkpointing", "false")).lower() in ("true", "1") else "false",
    )


def load_fluxtrain(paths):
    """{key: point} of train points from results.json files (later files win)."""
    points = {}
    for f in find_results(paths):
        try:
            with open(f) as fh:
                j = json.load(fh)
        except (OSError, ValueError) as e:
            print(f"skipping {f}: {e}", file=sys.stderr)
            continue
        if j.get("bench", {}).get("mode") != "train":
            continue
        for p in j.get("points", []):
            s = dict(p.get("settings", {}))
            if s.get("grad_accum", "1") not in ("1", "") or s.get("method", "full") not in ("full", ""):
                continue  # the reference is one full-training micro-batch per step
            fig = p.get("figures") or {}
            points[key_of(s)] = dict(
                status=p.get("status", "?"),
                error=p.get("error", ""),
                images_per_s=fig.get("images_per_s"),
                time_ms=fig.get("time_ms") or {},
                model_tflops=fig.get("model_tflops"),
                mfu=fig.get("mfu"),
                peak_memory_bytes=fig.get("peak_memory_bytes"),
                device_name=p.get("device_name", ""),
                source=f,
            )
    return points


def load_reference(paths):
    """{(key, mode): record} from flux_step.py JSON files (later files win)."""
    runs = {}
    files = []
    for p in paths:
        files += sorted(glob.glob(os.path.join(p, "*.json"))) if os.path.isdir(p) else [p]
    for f in files:
        try:
            with open(f) as fh:
                r = json.load(fh)
        except (OSError, ValueError) as e:
            print(f"skipping {f}: {e}", file=sys.stderr)
            continue
        if not isinstance(r, dict) or "model" not in r:
            continue
        r["source"] = f
        runs[(key_of(r), r.get("mode", "eager"))] = r
    return runs


def fmt_ips(r):
    if r is None:
        return "—"
    if r.get("status") != "ok" or r.get("images_per_s") is None:
        return r.get("status", "?")
    return f"{r['images_per_s']:.3f}"


def ratio(a, b):
    if not a or not b or a.get("status") != "ok" or b.get("status") != "ok":
        return "—"
    if not a.get("images_per_s") or not b.get("images_per_s"):
        return "—"
    return f"{a['images_per_s'] / b['images_per_s']:.2f}×"


def fmt_num(x, spec, scale=1.0, suffix=""):
    return "—" if x is None else f"{x * scale:{spec}}{suffix}"


def render(ft, ref):
    keys = sorted(set(ft) | {k for k, _ in ref})
    lines = [
        "# fluxtrain vs plain PyTorch (bench/reference/flux_step.py)",
        "",
        "Same device, same call, same shapes and precision: one FLUX full-training step with random "
        "weights, stand-in text inputs of the real shapes, flow-matching loss, backward, grad-norm "
        "clip and AdamW. Ratios are fluxtrain's images/s over the reference's (above 1: fluxtrain "
        "is faster).",
        "",
        "| model | resolution | batch | precision | weights / moments | checkpointing | fluxtrain images/s | "
        "eager images/s | compile images/s | fluxtrain / eager | fluxtrain / compile |",
        "| --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k in keys:
        f, e, c = ft.get(k), ref.get((k, "eager")), ref.get((k, "compile"))
        model, res, batch, prec, w, st, gc = k
        lines.append(
            f"| {model} | {res} | {batch} | {prec} | {w} / {st} | {'yes' if gc == 'true' else 'no'} | {fmt_ips(f)} | {fmt_ips(e)} | "
            f"{fmt_ips(c)} | {ratio(f, e)} | {ratio(f, c)} |"
        )
    lines += [
        "",
        "## Every run",
        "",
        "| run | model | res | batch | status | images/s | step ms p50 | step ms p90 | TFLOP/s | MFU | "
        "peak memory GiB | notes |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]

    def row(name, k, r, notes):
        t = r.get("time_ms") or {}
        status = r.get("status", "?")
        if status != "ok" and r.get("error"):
            notes = (notes + "; " if notes else "") + str(r["error"])[:120].replace("|", "/")
        lines.append(
            f"| {name} | {k[0]} | {k[1]} | {k[2]} | {status} | {fmt_ips(r) if status == 'ok' else '—'} | "
            f"{fmt_num(t.get('p50'), '.1f')} | {fmt_num(t.get('p90'), '.1f')} | "
            f"{fmt_num(r.get('model_tflops'), '.1f')} | {fmt_num(r.get('mfu'), '.1f', 100, ' %')} | "
            f"{fmt_num(r.get('peak_memory_bytes'), '.2f', 1 / 2**30)} | {notes} |"
        )

    for k in keys:
        if k in ft:
            row("fluxtrain", k, ft[k], ft[k].get("device_name", ""))
        for mode in ("eager", "compile"):
            r = ref.get((k, mode))
            if r is None:
                continue
            notes = [f"torch {r.get('torch', '?')}", f"AdamW {r.get('adamw', '?')}"]
            if mode == "compile" and r.get("compile_scope"):
                notes.append(f"compiled {r['compile_scope']} ({r.get('compile_mode', 'default')})")
            if r.get("first_step_s") is not None:
                notes.append(f"first step {r['first_step_s']:.1f} s")
            row(f"PyTorch {mode}", k, r, ", ".join(notes))
    if not keys:
        lines.append("| (no results found) | | | | | | | | | | | |")
    return "\n".join(lines) + "\n"


def pick(ft, n, model=None, resolution=None):
    ok = [
        (k, r) for k, r in ft.items()
        if r["status"] == "ok" and r.get("images_per_s")
        and (model is None or k[0] == model) and (resolution is None or k[1] == resolution)
    ]
    ok.sort(key=lambda kr: -kr[1]["images_per_s"])
    return [k for k, _ in ok[:n]]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fluxtrain", nargs="*", default=[], help="results.json files or folders")
    ap.add_argument("--reference", nargs="*", default=[], help="flux_step.py JSON files or folders")
    ap.add_argument("--out", default=None, help="markdown file (default: stdout)")
    ap.add_argument("--pick", type=int, default=0, help="print the best N fluxtrain points instead")
    ap.add_argument("--model", default=None, help="with --pick: only this model")
    ap.add_argument("--resolution", type=int, default=None, help="with --pick: only this resolution")
    args = ap.parse_args(argv)
    ft = load_fluxtrain(args.fluxtrain)
    if args.pick:
        for k in pick(ft, args.pick, args.model, args.resolution):
            print(" ".join(str(x) for x in k))
        return 0
    md = render(ft, load_reference(args.reference))
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(md)
        print(f"wrote {args.out}")
    sys.stdout.write(md if not args.out else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
