#!/usr/bin/env python3
"""Plain-PyTorch reference for fluxtrain's training benchmark point.

The same FLUX.1 transformer as src/model/flux.cpp + layers.cpp (Black Forest Labs' architecture
and parameter names, written here from the architecture facts: no diffusers / transformers / flux
package), and the same training step as `fluxtrain bench` runs for a train point (src/train/
trainer.cpp with the bench's point defaults, src/bench/sweep.cpp):

  * random weights (PyTorch's default Linear init, as libtorch's), adaLN-zero init of every
    modulation and of the final layer (fluxtrain's zero_init default);
  * stand-in conditioning of the real shapes: txt [B, text_tokens, context_in_dim] and
    vec [B, vec_in_dim] random float32 (what --stand_in_encoders feeds: hashed-word vectors of the
    T5/CLIP widths and token count); latents [B, C, R/f, R/f] random float32 per step, patchified
    to [B, (R/2f)^2, 4C];
  * flow matching: t = sigmoid(N(0, 1)) (logit_normal, fluxtrain's default), x_t = (1-t) x0 + t eps,
    target eps - x0, MSE in float32; guidance input 1.0 for models with a guidance embedder;
  * backward, global grad-norm clipping at 1.0, AdamW lr 1e-5 (constant), betas (0.9, 0.999),
    eps 1e-8, weight decay 0, gradients set to None after the step;
  * precision as fluxtrain's keys: --precision bf16 is autocast(bf16); --weights bf16 stores the
    weights in bf16; --optimizer_state bf16 keeps AdamW's moments in bf16.

It times warmup + steps optimizer steps (CUDA-synchronised), and writes images/s, step time
mean/p50/p90/p99, peak memory and model FLOPs (fluxtrain's formula, src/model/flux.cpp
flux_forward_flops, x3 for training) -> TFLOP/s and MFU.

  python3 bench/reference/flux_step.py --model flux-dev --resolution 512 --batch_size 4 \
      --precision bf16 --warmup 3 --steps 10 [--compile] --json out.json

Out of memory is a result: it is recorded as status "oom" and the script exits 0.

The FLOP and parameter-count functions at the top need no torch (bench/reference/
test_formulas.py checks them with plain python3); torch is imported only to build and run.
"""

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
import traceback

# --------------------------------------------------------------------------------------------
# Presets (src/model/presets.cpp) and the torch-free formulas.
# --------------------------------------------------------------------------------------------

_FLUX_12B = dict(
    in_channels=64,
    out_channels=64,
    vec_in_dim=768,
    context_in_dim=4096,
    hidden_size=3072,
    mlp_ratio=4.0,
    num_heads=24,
    depth=19,
    depth_single_blocks=38,
    axes_dim=(16, 56, 56),
    theta=10000.0,
    qkv_bias=True,
)

# name -> (FluxParams, pipeline facts). ae_factor: pixels per latent pixel; latent_channels: the
# autoencoder's channels; max_text_tokens: text tokens the model sees; train_guidance: the
# guidance input while training (models with a guidance embedder).
PRESETS = {
    "flux-dev": dict(
        flux=dict(_FLUX_12B, guidance_embed=True),
        ae_factor=8,
        latent_channels=16,
        max_text_tokens=512,
        train_guidance=1.0,
    ),
    "flux-schnell": dict(
        flux=dict(_FLUX_12B, guidance_embed=False),
        ae_factor=8,
        latent_channels=16,
        max_text_tokens=256,
        train_guidance=1.0,
    ),
    # Pixel-space CPU model: 32x32 RGB, 2x2 pixels -> 12 channels, 2x2 patches -> 48 channels.
    "tiny": dict(
        flux=dict(
            in_channels=48,
            out_channels=48,
            vec_in_dim=64,
            context_in_dim=64,
            hidden_size=128,
            mlp_ratio=4.0,
            num_heads=4,
            depth=2,
            depth_single_blocks=4,
            axes_dim=(8, 12, 12),
            theta=10000.0,
            qkv_bias=True,
            guidance_embed=False,
        ),
        ae_factor=2,
        latent_channels=12,
        max_text_tokens=12,
        train_guidance=1.0,
    ),
}
PRESETS["tiny-guidance"] = dict(PRESETS["tiny"], flux=dict(PRESETS["tiny"]["flux"], guidance_embed=True))

# DESIGN.md section 4 (BFL's published sizes); checked against the model that is built.
EXPECTED_PARAMS = {"flux-dev": 11_901_408_320, "flux-schnell": 11_891_178_560}

# fluxtrain's bench train-point defaults (src/bench/sweep.cpp train_point_defaults and the train
# schema's defaults in src/train/train_config.cpp).
ADAMW = dict(lr=1e-5, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
MAX_GRAD_NORM = 1.0


def validate_params(p):
    h, heads = p["hidden_size"], p["num_heads"]
    if h <= 0 or heads <= 0 or h % heads:
        raise ValueError(f"hidden_size {h} must be a positive multiple of num_heads {heads}")
    if sum(p["axes_dim"]) != h // heads:
        raise ValueError(f"axes_dim {p['axes_dim']} must sum to the head dim {h // heads}")
    if any(a <= 0 or a % 2 for a in p["axes_dim"]):
        raise ValueError("every axes_dim entry must be even and positive")


def parameter_shapes(p):
    """Every parameter by BFL name and shape, in fluxtrain's order (flux_parameter_shapes)."""
    validate_params(p)
    H = p["hidden_size"]
    D = H // p["num_heads"]
    mlp = int(H * p["mlp_ratio"])
    out = []

    def linear(name, n_in, n_out, bias=True):
        out.append((name + ".weight", (n_out, n_in)))
        if bias:
            out.append((name + ".bias", (n_out,)))

    def embedder(name, n_in):
        linear(name + ".in_layer", n_in, H)
        linear(name + ".out_layer", H, H)

    def qknorm(name):
        out.append((name + ".query_norm.scale", (D,)))
        out.append((name + ".key_norm.scale", (D,)))

    linear("img_in", p["in_channels"], H)
    embedder("time_in", 256)
    embedder("vector_in", p["vec_in_dim"])
    if p["guidance_embed"]:
        embedder("guidance_in", 256)
    linear("txt_in", p["context_in_dim"], H)
    for i in range(p["depth"]):
        for s in ("img", "txt"):
            b = f"double_blocks.{i}.{s}_"
            linear(b + "mod.lin", H, 6 * H)
            linear(b + "attn.qkv", H, 3 * H, p["qkv_bias"])
            qknorm(b + "attn.norm")
            linear(b + "attn.proj", H, H)
            linear(b + "mlp.0", H, mlp)
            linear(b + "mlp.2", mlp, H)
    for i in range(p["depth_single_blocks"]):
        b = f"single_blocks.{i}."
        linear(b + "linear1", H, 3 * H + mlp)
        linear(b + "linear2", H + mlp, H)
        qknorm(b + "norm")
        linear(b + "modulation.lin", H, 3 * H)
    linear("final_layer.linear", H, p["out_channels"])
    linear("final_layer.adaLN_modulation.1", H, 2 * H)
    return out


def parameter_count(p):
    return sum(math.prod(shape) for _, shape in parameter_shapes(p))


def flux_forward_flops(p, image_tokens, text_tokens):
    """Matmul FLOPs of one forward pass per sample: a line-by-line port of fluxtrain's
    flux_forward_flops (src/model/flux.cpp), same operation order so the doubles agree."""
    H = float(p["hidden_size"])
    mlp = H * p["mlp_ratio"]
    Li, Lt = float(image_tokens), float(text_tokens)
    L = Li + Lt
    double_block_per_stream = 3 * H * H + H * H + 2 * H * mlp  # qkv, proj, mlp
    single_block = H * (3 * H + mlp) + (H + mlp) * H
    macs = 0.0
    macs += Li * p["in_channels"] * H + Lt * p["context_in_dim"] * H  # img_in, txt_in
    macs += p["depth"] * (L * double_block_per_stream)  # both streams
    macs += p["depth_single_blocks"] * (L * single_block)
    macs += Li * H * p["out_channels"]  # final linear
    # Modulation and embedders act once per sample, not per token.
    macs += p["depth"] * 2 * 6 * H * H + p["depth_single_blocks"] * 3 * H * H + 2 * H * H
    macs += (256 * H + H * H) * (2 if p["guidance_embed"] else 1) + p["vec_in_dim"] * H + H * H
    flops = 2 * macs
    # Attention: QK^T and PV, 2 x L^2 x H multiply-adds per block.
    flops += (p["depth"] + p["depth_single_blocks"]) * 4.0 * L * L * H
    return flops


def image_tokens_for(preset, resolution):
    side = resolution // (2 * preset["ae_factor"])
    return side * side


def training_flops_per_image(preset, resolution):
    """Model FLOPs of one training sample: 3 x forward (src/bench/flops.cpp)."""
    return 3.0 * flux_forward_flops(
        preset["flux"], image_tokens_for(preset, resolution), preset["max_text_tokens"]
    )


def datasheet_peak_tflops(device_name, precision):
    """Dense peak TFLOP/s by device name (src/bench/flops.cpp's table); None when unknown."""
    table = [  # (upper-case substring, bf16 dense tensor core, fp32 without TF32); first wins
        ("H200", 989.0, 67.0),
        ("H100 NVL", 835.0, 60.0),
        ("H100 PCIE", 756.0, 51.0),
        ("H100", 989.0, 67.0),
        ("A100", 312.0, 19.5),
    ]
    if precision not in ("bf16", "fp32"):
        return None
    name = (device_name or "").upper()
    for match, bf16, fp32 in table:
        if match in name:
            return bf16 if precision == "bf16" else fp32
    return None


def summarize_ms(values):
    """mean, min, max and p50/p90/p99 (linear interpolation between ranks, src/bench/stats.cpp)."""
    v = sorted(values)
    n = len(v)

    def pct(q):
        rank = q / 100.0 * (n - 1)
        lo = int(math.floor(rank))
        hi = min(lo + 1, n - 1)
        return v[lo] + (rank - lo) * (v[hi] - v[lo])

    return dict(
        count=n, mean=sum(v) / n, min=v[0], max=v[-1], p50=pct(50), p90=pct(90), p99=pct(99)
    )


def check_resolution(preset, resolution):
    m = 2 * preset["ae_factor"]
    if resolution <= 0 or resolution % m:
        raise ValueError(f"resolution {resolution}: must be a positive multiple of {m}")


# --------------------------------------------------------------------------------------------
# The model (torch from here on; classes are built on first use so the module imports without it).
# --------------------------------------------------------------------------------------------

_MODULES = None


def modules():
    """The FLUX nn.Module classes and helpers (a namespace), defined on first call."""
    global _MODULES
    if _MODULES is not None:
        return _MODULES
    import types

    import torch
    import torch.nn.functional as F
    from torch import nn

    has_sdpa = hasattr(F, "scaled_dot_product_attention")

    def at_least_float(x):
        return x if x.dtype == torch.float64 else x.float()

    def timestep_embedding(t, dim, max_period=10000.0, time_factor=1000.0):
        # [B] -> [B, dim]: [cos, sin] of t*1000 * exp(-ln(max_period) i / half).
        half = dim // 2
        freqs = torch.exp(
            -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=t.device) / half
        )
        args = (t.float() * time_factor)[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], -1)
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], -1)
        return emb.to(t.dtype) if torch.is_floating_point(t) else emb

    def rope(pos, dim, theta):
        # [B, L] -> [B, L, dim/2, 2, 2] float32 rotations [[cos, -sin], [sin, cos]]; angles in f64.
        scale = torch.arange(0, dim, 2, dtype=torch.float64, device=pos.device) / dim
        omega = 1.0 / (theta**scale)
        angle = pos.double()[..., None] * omega
        c, s = torch.cos(angle), torch.sin(angle)
        out = torch.stack([c, -s, s, c], -1)
        return out.view(*out.shape[:-1], 2, 2).float()

    def rope_nd(ids, axes_dim, theta):
        # [B, L, n_axes] -> [B, 1, L, sum(axes_dim)/2, 2, 2]
        parts = [rope(ids[..., i], d, theta) for i, d in enumerate(axes_dim)]
        return torch.cat(parts, -3).unsqueeze(1)

    def apply_rope(x, pe):
        # Rotate interleaved pairs (x[2i], x[2i+1]) of x [B, h, L, D], in float32.
        xf = at_least_float(x).reshape(*x.shape[:-1], -1, 1, 2)
        out = pe[..., 0] * xf[..., 0] + pe[..., 1] * xf[..., 1]
        return out.reshape(x.shape).to(x.dtype)

    def sdpa(q, k, v):
        if has_sdpa:
            return F.scaled_dot_product_attention(q, k, v)
        # torch < 2.0 (CPU checks only): the same maths, unfused.
        w = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1]), -1)
        return w @ v

    def attention(q, k, v, pe):
        # RoPE on q and k, softmax attention: [B, h, L, D] x 3 -> [B, L, h*D].
        x = sdpa(apply_rope(q, pe), apply_rope(k, pe), v)
        return x.permute(0, 2, 1, 3).flatten(2)

    def layer_norm(x):
        return F.layer_norm(x, (x.shape[-1],), eps=1e-6)

    def modulate(x, shift, scale):
        return (1 + scale) * layer_norm(x) + shift

    def split_qkv(qkv, num_heads):
        # [B, L, 3*h*D] -> q, k, v each [B, h, L, D]
        B, L, C = qkv.shape
        x = qkv.view(B, L, 3, num_heads, C // (3 * num_heads)).permute(2, 0, 3, 1, 4)
        return x[0], x[1], x[2]

    class MLPEmbedder(nn.Module):
        def __init__(self, in_dim, hidden, **kw):
            super().__init__()
            self.in_layer = nn.Linear(in_dim, hidden, **kw)
            self.out_layer = nn.Linear(hidden, hidden, **kw)

        def forward(self, x):
            return self.out_layer(F.silu(self.in_layer(x)))

    class RMSNorm(nn.Module):
        def __init__(self, dim, **kw):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(dim, **kw))

        def forward(self, x):
            xf = at_least_float(x)
            rrms = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)
            return (xf * rrms).to(x.dtype) * self.scale

    class QKNorm(nn.Module):
        def __init__(self, dim, **kw):
            super().__init__()
            self.query_norm = RMSNorm(dim, **kw)
            self.key_norm = RMSNorm(dim, **kw)

        def forward(self, q, k, v):
            return self.query_norm(q).to(v.dtype), self.key_norm(k).to(v.dtype)

    class SelfAttention(nn.Module):  # weights only: the attention is shared (attention())
        def __init__(self, dim, num_heads, qkv_bias, **kw):
            super().__init__()
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, **kw)
            self.norm = QKNorm(dim // num_heads, **kw)
            self.proj = nn.Linear(dim, dim, **kw)

    class Modulation(nn.Module):
        def __init__(self, dim, double, **kw):
            super().__init__()
            self.multiplier = 6 if double else 3
            self.lin = nn.Linear(dim, self.multiplier * dim, **kw)

        def forward(self, vec):
            # -> [(shift, scale, gate)] x 1 or 2, each [B, 1, H]
            c = self.lin(F.silu(vec))[:, None, :].chunk(self.multiplier, -1)
            return [c[i : i + 3] for i in range(0, self.multiplier, 3)]

    def make_mlp(hidden, mlp_hidden, **kw):
        return nn.Sequential(
            nn.Linear(hidden, mlp_hidden, **kw),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_hidden, hidden, **kw),
        )

    class DoubleStreamBlock(nn.Module):
        def __init__(self, hidden, num_heads, mlp_ratio, qkv_bias, **kw):
            super().__init__()
            mlp_hidden = int(hidden * mlp_ratio)
            self.num_heads = num_heads
            self.img_mod = Modulation(hidden, True, **kw)
            self.img_attn = SelfAttention(hidden, num_heads, qkv_bias, **kw)
            self.img_mlp = make_mlp(hidden, mlp_hidden, **kw)
            self.txt_mod = Modulation(hidden, True, **kw)
            self.txt_attn = SelfAttention(hidden, num_heads, qkv_bias, **kw)
            self.txt_mlp = make_mlp(hidden, mlp_hidden, **kw)

        def forward(self, img, txt, vec, pe):
            (i_sh1, i_sc1, i_g1), (i_sh2, i_sc2, i_g2) = self.img_mod(vec)
            (t_sh1, t_sc1, t_g1), (t_sh2, t_sc2, t_g2) = self.txt_mod(vec)
            iq, ik, iv = split_qkv(self.img_attn.qkv(modulate(img, i_sh1, i_sc1)), self.num_heads)
            tq, tk, tv = split_qkv(self.txt_attn.qkv(modulate(txt, t_sh1, t_sc1)), self.num_heads)
            iq, ik = self.img_attn.norm(iq, ik, iv)
            tq, tk = self.txt_attn.norm(tq, tk, tv)
            q, k, v = torch.cat([tq, iq], 2), torch.cat([tk, ik], 2), torch.cat([tv, iv], 2)
            attn = attention(q, k, v, pe)  # [B, Lt+Li, H], sequence order [txt, img]
            Lt = txt.shape[1]
            txt_a, img_a = attn[:, :Lt], attn[:, Lt:]
            img = img + i_g1 * self.img_attn.proj(img_a)
            img = img + i_g2 * self.img_mlp(modulate(img, i_sh2, i_sc2))
            txt = txt + t_g1 * self.txt_attn.proj(txt_a)
            txt = txt + t_g2 * self.txt_mlp(modulate(txt, t_sh2, t_sc2))
            return img, txt

    class SingleStreamBlock(nn.Module):
        def __init__(self, hidden, num_heads, mlp_ratio, **kw):
            super().__init__()
            self.hidden_size = hidden
            self.num_heads = num_heads
            self.mlp_hidden_dim = int(hidden * mlp_ratio)
            self.linear1 = nn.Linear(hidden, 3 * hidden + self.mlp_hidden_dim, **kw)
            self.linear2 = nn.Linear(hidden + self.mlp_hidden_dim, hidden, **kw)
            self.norm = QKNorm(hidden // num_heads, **kw)
            self.modulation = Modulation(hidden, False, **kw)

        def forward(self, x, vec, pe):
            ((shift, scale, gate),) = self.modulation(vec)
            qkv, mlp = torch.split(
                self.linear1(modulate(x, shift, scale)), [3 * self.hidden_size, self.mlp_hidden_dim], -1
            )
            q, k, v = split_qkv(qkv, self.num_heads)
            q, k = self.norm(q, k, v)
            attn = attention(q, k, v, pe)
            out = self.linear2(torch.cat([attn, F.gelu(mlp, approximate="tanh")], 2))
            return x + gate * out

    class LastLayer(nn.Module):
        def __init__(self, hidden, out_channels, **kw):
            super().__init__()
            self.linear = nn.Linear(hidden, out_channels, **kw)
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden, **kw))

        def forward(self, x, vec):
            shift, scale = self.adaLN_modulation(vec).chunk(2, 1)  # BFL order: shift, scale
            return self.linear((1 + scale[:, None]) * layer_norm(x) + shift[:, None])

    class Flux(nn.Module):
        def __init__(self, p, **kw):
            super().__init__()
            validate_params(p)
            self.params = dict(p)
            H = p["hidden_size"]
            self.img_in = nn.Linear(p["in_channels"], H, **kw)
            self.time_in = MLPEmbedder(256, H, **kw)
            self.vector_in = MLPEmbedder(p["vec_in_dim"], H, **kw)
            self.guidance_in = MLPEmbedder(256, H, **kw) if p["guidance_embed"] else None
            self.txt_in = nn.Linear(p["context_in_dim"], H, **kw)
            self.double_blocks = nn.ModuleList(
                DoubleStreamBlock(H, p["num_heads"], p["mlp_ratio"], p["qkv_bias"], **kw)
                for _ in range(p["depth"])
            )
            self.single_blocks = nn.ModuleList(
                SingleStreamBlock(H, p["num_heads"], p["mlp_ratio"], **kw)
                for _ in range(p["depth_single_blocks"])
            )
            self.final_layer = LastLayer(H, p["out_channels"], **kw)
            self.gradient_checkpointing = False  # as fluxtrain's: recompute each block in backward

        def run_block(self, block, *inputs):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                return checkpoint(block, *inputs, use_reentrant=False)
            return block(*inputs)

        def forward(self, img, img_ids, txt, txt_ids, timesteps, y, guidance=None):
            img = self.img_in(img)  # [B, Li, H]
            vec = self.time_in(timestep_embedding(timesteps, 256))  # [B, H]
            if self.guidance_in is not None:
                if guidance is None:
                    raise ValueError("this model embeds guidance; pass a guidance value")
                vec = vec + self.guidance_in(timestep_embedding(guidance, 256))
            vec = vec + self.vector_in(y)
            txt = self.txt_in(txt)  # [B, Lt, H]
            pe = rope_nd(torch.cat([txt_ids, img_ids], 1), self.params["axes_dim"], self.params["theta"])
            for block in self.double_blocks:
                img, txt = self.run_block(block, img, txt, vec, pe)
            x = torch.cat([txt, img], 1)  # [B, Lt+Li, H]
            for block in self.single_blocks:
                x = self.run_block(block, x, vec, pe)
            x = x[:, txt.shape[1] :]
            return self.final_layer(x, vec)  # [B, Li, out_channels]

    def zero_init_modulation(model):
        # adaLN-zero, as fluxtrain's zero_init (src/sample/pipeline.cpp).
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "mod.lin." in n or "modulation.lin." in n or n.startswith("final_layer."):
                    p.zero_()

    def patchify(x):
        # b c (h 2) (w 2) -> b (h w) (c 2 2)
        B, C, H, W = x.shape
        h, w = H // 2, W // 2
        return x.view(B, C, h, 2, w, 2).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C * 4)

    def image_ids(batch, height, width, device):
        h, w = height // 2, width // 2
        ids = torch.zeros(h, w, 3, device=device)
        ids[..., 1] += torch.arange(h, device=device)[:, None]
        ids[..., 2] += torch.arange(w, device=device)[None, :]
        return ids.view(1, h * w, 3).expand(batch, h * w, 3).contiguous()

    def text_ids(batch, length, device):
        return torch.zeros(batch, length, 3, device=device)

    _MODULES = types.SimpleNamespace(**{k: v for k, v in locals().items() if not k.startswith("_")})
    _MODULES.has_sdpa = has_sdpa
    return _MODULES


# --------------------------------------------------------------------------------------------
# The training step and its timing.
# --------------------------------------------------------------------------------------------


class FluxtrainAdamW:
    """fluxtrain's AdamW (src/train/optimizer.cpp), for state dtypes torch.optim.AdamW cannot keep
    (moments in another dtype than the weights): per parameter, update in float32, store rounded."""

    def __init__(self, params, lr, betas, eps, weight_decay, state_dtype):
        import torch

        self.params = [p for p in params]
        self.lr, (self.b1, self.b2), self.eps, self.wd = lr, betas, eps, weight_decay
        self.m = [torch.zeros_like(p, dtype=state_dtype) for p in self.params]
        self.v = [torch.zeros_like(p, dtype=state_dtype) for p in self.params]
        self.step_count = 0

    def step(self):
        import torch

        with torch.no_grad():
            self.step_count += 1
            bc1 = 1 - self.b1**self.step_count
            bc2 = 1 - self.b2**self.step_count
            for p, m_s, v_s in zip(self.params, self.m, self.v):
                if p.grad is None:
                    continue
                g = p.grad.float()
                m = m_s if m_s.dtype == torch.float32 else m_s.float()
                v = v_s if v_s.dtype == torch.float32 else v_s.float()
                m.mul_(self.b1).add_(g, alpha=1 - self.b1)
                v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
                if m is not m_s:
                    m_s.copy_(m)
                    v_s.copy_(v)
                denom = (v.sqrt() / math.sqrt(bc2)).add_(self.eps)
                pf = p if p.dtype == torch.float32 else p.float()
                if self.wd:
                    pf.mul_(1 - self.lr * self.wd)
                pf.addcdiv_(m, denom, value=-self.lr / bc1)
                if pf is not p:
                    p.copy_(pf)

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None


def is_oom(exc):
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(
        s in text
        for s in ("out of memory", "outofmemoryerror", "can't allocate memory", "cannot allocate memory")
    )


def make_optimizer(params, weights_dtype, state_dtype, impl, device):
    """(optimizer, implementation name). auto: torch.optim.AdamW fused on CUDA (foreach elsewhere)
    when the moments can live in the weights' dtype (what torch does), else fluxtrain's loop."""
    import torch

    kw = dict(
        lr=ADAMW["lr"],
        betas=(ADAMW["beta1"], ADAMW["beta2"]),
        eps=ADAMW["eps"],
        weight_decay=ADAMW["weight_decay"],
    )
    if impl == "auto":
        if state_dtype != weights_dtype:
            impl = "fluxtrain"
        else:
            impl = "fused" if device.type == "cuda" else "foreach"
    if impl == "fluxtrain":
        return FluxtrainAdamW(params, state_dtype=state_dtype, **kw), impl
    if state_dtype != weights_dtype:
        raise ValueError(
            f"--adamw {impl}: torch.optim.AdamW keeps its moments in the weights' dtype; use --adamw fluxtrain"
        )
    if impl == "fused":
        try:
            return torch.optim.AdamW(params, fused=True, **kw), "fused"
        except (TypeError, RuntimeError, ValueError) as e:  # older torch: no fused bf16
            print(f"fused AdamW unavailable ({e}); using foreach", file=sys.stderr)
            impl = "foreach"
    if impl == "foreach":
        try:
            return torch.optim.AdamW(params, foreach=True, **kw), "foreach"
        except TypeError:
            pass
    return torch.optim.AdamW(params, **kw), "for-loop"


def dtype_of(name):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16}[name]


def device_name_of(device):
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU: {platform.processor() or platform.machine()}"


def run(args, record):
    """Builds the model, runs warmup + steps training steps; fills `record`."""
    import torch

    preset = PRESETS[args.model]
    p = preset["flux"]
    check_resolution(preset, args.resolution)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = False  # fluxtrain: fp32 means fp32 (no TF32)
        torch.backends.cudnn.allow_tf32 = False
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    compute = dtype_of(args.precision)
    weights_dtype = dtype_of(args.weights)
    state_dtype = dtype_of(args.optimizer_state)
    if weights_dtype != torch.float32 and compute != weights_dtype:
        raise ValueError("--weights bf16 needs --precision bf16 (as fluxtrain)")
    record.update(
        device=str(device),
        device_name=device_name_of(device),
        torch=torch.__version__,
        cuda=getattr(torch.version, "cuda", None),
        attention="sdpa" if modules().has_sdpa else "math (torch without scaled_dot_product_attention)",
    )
    torch.manual_seed(args.seed)

    M = modules()
    t0 = time.perf_counter()
    model = M.Flux(p, device=device, dtype=weights_dtype)
    if args.zero_init:
        M.zero_init_modulation(model)
    model.train()
    model.gradient_checkpointing = args.gradient_checkpointing
    n_params = sum(t.numel() for t in model.parameters())
    built = {n: tuple(t.shape) for n, t in model.named_parameters()}
    expected = dict(parameter_shapes(p))
    assert built == expected, "parameter names/shapes differ from fluxtrain's: " + str(
        sorted(set(built.items()) ^ set(expected.items()))[:8]
    )
    assert n_params == parameter_count(p), (n_params, parameter_count(p))
    if args.model in EXPECTED_PARAMS:
        assert n_params == EXPECTED_PARAMS[args.model], (n_params, EXPECTED_PARAMS[args.model])
    record["params"] = n_params
    print(f"model {args.model}: {n_params:,} parameters ({args.weights} weights) on {record['device_name']}")

    opt, opt_impl = make_optimizer(list(model.parameters()), weights_dtype, state_dtype, args.adamw, device)
    record["adamw"] = opt_impl

    forward = model
    if args.compile:
        if not hasattr(torch, "compile"):
            raise RuntimeError(f"--compile needs torch >= 2.0 (this is {torch.__version__})")
        import torch._dynamo as dynamo

        # Every block instance is its own guard target on older torch: room for all of them.
        for key in ("cache_size_limit", "accumulated_cache_size_limit"):
            if hasattr(dynamo.config, key):
                setattr(dynamo.config, key, max(getattr(dynamo.config, key), 4 * (p["depth"] + p["depth_single_blocks"])))
        if args.compile_scope == "model":
            forward = torch.compile(model, mode=args.compile_mode)
        else:  # "blocks": regional compilation, one graph per block class, reused by every block
            for blocks in (model.double_blocks, model.single_blocks):
                for i in range(len(blocks)):
                    blocks[i] = torch.compile(blocks[i], mode=args.compile_mode)
        record["compile_scope"] = args.compile_scope
        record["compile_mode"] = args.compile_mode
    record["init_s"] = time.perf_counter() - t0

    # Inputs: stand-in conditioning once (frozen encoders), latents/noise/timesteps per step.
    B, f, C = args.batch_size, preset["ae_factor"], preset["latent_channels"]
    side = args.resolution // f
    Lt = preset["max_text_tokens"]
    txt = torch.randn(B, Lt, p["context_in_dim"], device=device)
    vec = torch.randn(B, p["vec_in_dim"], device=device)
    img_ids = M.image_ids(B, side, side, device)
    txt_ids = M.text_ids(B, Lt, device)
    guidance = torch.full((B,), preset["train_guidance"], device=device) if p["guidance_embed"] else None
    autocast = (
        (lambda: torch.autocast(device_type=device.type, dtype=compute))
        if compute != torch.float32
        else (lambda: torch.autocast(device_type=device.type, enabled=False))
    )
    params = [t for t in model.parameters()]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step():
        x0 = M.patchify(torch.randn(B, C, side, side, device=device))  # [B, Li, 4C]
        noise = torch.randn_like(x0)
        t = torch.sigmoid(torch.randn(B, device=device))  # logit_normal(0, 1)
        tb = t.to(x0.dtype).view(B, 1, 1)
        x_t = (1 - tb) * x0 + tb * noise
        target = noise - x0
        with autocast():
            pred = forward(x_t, img_ids, txt, txt_ids, t, vec, guidance)
        loss = (pred.float() - target.float()).pow(2).flatten(1).mean(1).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times_ms, losses = [], []
    for i in range(args.warmup + args.steps):
        sync()
        s = time.perf_counter()
        loss = step()
        sync()
        ms = (time.perf_counter() - s) * 1000.0
        if not math.isfinite(loss):
            raise RuntimeError(f"training diverged: loss is {loss} at step {i + 1}")
        losses.append(loss)
        if i == 0:
            record["first_step_s"] = ms / 1000.0  # includes compilation with --compile
        if i >= args.warmup:
            times_ms.append(ms)
        print(f"step {i + 1}/{args.warmup + args.steps} {'(warmup) ' if i < args.warmup else ''}"
              f"loss {loss:.4f} {ms:.1f} ms", flush=True)

    summary = summarize_ms(times_ms)
    images_per_s = B * len(times_ms) / (sum(times_ms) / 1000.0)
    flops = training_flops_per_image(preset, args.resolution)
    tflops = flops * images_per_s / 1e12
    peak = args.peak_tflops if args.peak_tflops > 0 else datasheet_peak_tflops(record["device_name"], args.precision)
    record.update(
        status="ok",
        times_ms=times_ms,
        losses=losses,
        time_ms=summary,
        images_per_s=images_per_s,
        tokens_per_s=images_per_s * (record["image_tokens"] + record["text_tokens"]),
        model_flops_per_image=flops,
        model_tflops=tflops,
        peak_tflops=peak,
        mfu=(tflops / peak) if peak else None,
    )
    if device.type == "cuda":
        record["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
        record["peak_memory_kind"] = "cuda_allocated"
        record["cuda_peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
    else:
        record["peak_memory_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        record["peak_memory_kind"] = "rss"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="flux-dev", choices=sorted(PRESETS))
    ap.add_argument("--resolution", type=int, default=512, help="image side in pixels")
    ap.add_argument("--batch_size", type=int, default=1)
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"], help="compute (bf16: autocast)")
    ap.add_argument("--weights", default=None, choices=["fp32", "bf16"],
                    help="weight dtype (default: bf16 with --precision bf16, as configs/bench/gpu-train.yaml)")
    ap.add_argument("--optimizer_state", default=None, choices=["fp32", "bf16"],
                    help="AdamW moment dtype (default: the weights' dtype)")
    ap.add_argument("--adamw", default="auto", choices=["auto", "fused", "foreach", "for-loop", "fluxtrain"],
                    help="AdamW implementation (auto: torch fused on CUDA when it can keep the state dtype)")
    ap.add_argument("--gradient_checkpointing", action="store_true",
                    help="recompute each block's activations in backward (fluxtrain's gradient_checkpointing)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--compile", action="store_true", help="torch.compile the transformer")
    ap.add_argument("--compile_scope", default="blocks", choices=["blocks", "model"],
                    help="blocks: each transformer block (regional, quick to compile); model: the whole forward")
    ap.add_argument("--compile_mode", default="default", help="torch.compile mode")
    ap.add_argument("--no_zero_init", dest="zero_init", action="store_false",
                    help="keep random modulation/final weights (fluxtrain zero-inits them)")
    ap.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if available)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peak_tflops", type=float, default=0.0,
                    help="peak TFLOP/s for MFU (default: datasheet by device name, e.g. H100/H200 SXM 989 bf16)")
    ap.add_argument("--json", default=None, help="write the result here")
    ap.add_argument("--check_params", action="store_true",
                    help="build the model on the meta device (no memory), check its parameter names, "
                         "shapes and count against fluxtrain's, print the count and exit")
    args = ap.parse_args(argv)
    if args.weights is None:
        args.weights = args.precision
    if args.optimizer_state is None:
        args.optimizer_state = args.weights
    if args.batch_size < 1 or args.steps < 1 or args.warmup < 0:
        ap.error("batch_size and steps must be >= 1, warmup >= 0")
    return args


def check_params(model_name):
    """Builds `model_name` on the meta device and checks it against parameter_shapes(); returns the count."""
    import torch

    p = PRESETS[model_name]["flux"]
    model = modules().Flux(p, device=torch.device("meta"), dtype=torch.bfloat16)
    built = {n: tuple(t.shape) for n, t in model.named_parameters()}
    expected = dict(parameter_shapes(p))
    if built != expected:
        diff = sorted(set(built.items()) ^ set(expected.items()))
        raise AssertionError(f"{model_name}: parameter names/shapes differ from fluxtrain's: {diff[:8]}")
    if [n for n, _ in model.named_parameters()] != [n for n, _ in parameter_shapes(p)]:
        raise AssertionError(f"{model_name}: parameter order differs from fluxtrain's")
    n = sum(t.numel() for t in model.parameters())
    if n != parameter_count(p) or n != EXPECTED_PARAMS.get(model_name, n):
        raise AssertionError(f"{model_name}: {n} parameters, expected {EXPECTED_PARAMS.get(model_name, parameter_count(p))}")
    return n


def main(argv=None):
    args = parse_args(argv)
    import torch

    if args.check_params:
        n = check_params(args.model)
        print(f"{args.model}: {n:,} parameters, names and shapes as fluxtrain's")
        return 0

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    preset = PRESETS[args.model]
    record = dict(
        tool="bench/reference/flux_step.py",
        status="failed",
        error="",
        model=args.model,
        resolution=args.resolution,
        batch_size=args.batch_size,
        precision=args.precision,
        weights=args.weights,
        optimizer_state=args.optimizer_state,
        gradient_checkpointing=args.gradient_checkpointing,
        mode="compile" if args.compile else "eager",
        warmup=args.warmup,
        steps=args.steps,
        image_tokens=image_tokens_for(preset, args.resolution),
        text_tokens=preset["max_text_tokens"],
        python=platform.python_version(),
        command=" ".join([os.path.basename(sys.argv[0])] + (argv if argv is not None else sys.argv[1:])),
    )
    code = 0
    try:
        run(args, record)
    except Exception as e:  # noqa: BLE001 - every outcome is a record
        if is_oom(e):
            record["status"] = "oom"
            record["error"] = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            print(f"out of memory: {record['error']}", file=sys.stderr)
        else:
            record["status"] = "failed"
            record["error"] = f"{type(e).__name__}: {e}".strip().splitlines()[0][:300]
            traceback.print_exc()
            code = 1
        try:
            if torch.cuda.is_available() and str(args.device).startswith("cuda"):
                record["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
                record["peak_memory_kind"] = "cuda_allocated"
        except Exception:  # noqa: BLE001
            pass
    if record["status"] == "ok":
        t = record["time_ms"]
        mfu = f"{100 * record['mfu']:.1f} %" if record["mfu"] is not None else "n/a (unknown peak)"
        print(
            f"{args.model} {args.resolution}px bs{args.batch_size} {args.precision} {record['mode']}: "
            f"{record['images_per_s']:.3f} images/s, step {t['mean']:.1f} ms mean / {t['p50']:.1f} p50 / "
            f"{t['p90']:.1f} p90, {record['model_tflops']:.1f} TFLOP/s, MFU {mfu}, "
            f"peak memory {record['peak_memory_bytes'] / 2**30:.2f} GiB ({record['peak_memory_kind']})"
        )
    else:
        print(f"{args.model} {args.resolution}px bs{args.batch_size} {record['mode']}: {record['status']}: {record['error']}")
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
            fh.write("\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
