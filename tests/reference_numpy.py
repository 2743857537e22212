"""An independent NumPy (float64) reference of StRAttention.

Written from the reference page (docs/stra-reference.md), not from the JAX code:
grouped convolutions loop over groups, the local attention walks every output
node and every kernel position explicitly, and mode attention walks heads and
positions. It reads the same parameter arrays as the Flax modules (a Flax
variables dict: kernels (1, 1, in/groups, out), BatchNorm scale/bias/mean/var)
and returns, besides the output, the batch moments each BatchNorm used in
training mode so tests can check the running-statistics update.
"""
from __future__ import annotations

import math

import numpy as np

EPS = 1e-5


def grouped_conv1x1(x, kernel, bias, groups):
    """x (B, H, W, Cin); kernel (1, 1, Cin/groups, Cout) -> (B, H, W, Cout)."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)[0, 0]
    cin, cout = x.shape[-1], kernel.shape[-1]
    ig, og = cin // groups, cout // groups
    out = np.zeros(x.shape[:-1] + (cout,))
    for g in range(groups):
        xg = x[..., g * ig:(g + 1) * ig]
        wg = kernel[:, g * og:(g + 1) * og]
        out[..., g * og:(g + 1) * og] = xg @ wg
    if bias is not None:
        out = out + np.asarray(bias, np.float64)
    return out


def batch_norm(x, params, stats, train, moments, name):
    """Normalise the last axis; train mode uses biased batch moments."""
    axes = tuple(range(x.ndim - 1))
    if train:
        mean = x.mean(axis=axes)
        var = ((x - mean) ** 2).mean(axis=axes)
        moments[name] = (mean, var)
    else:
        mean = np.asarray(stats["mean"], np.float64)
        var = np.asarray(stats["var"], np.float64)
    scale = np.asarray(params["scale"], np.float64)
    bias = np.asarray(params["bias"], np.float64)
    return (x - mean) / np.sqrt(var + EPS) * scale + bias


def softmax(v, axis):
    v = v - v.max(axis=axis, keepdims=True)
    e = np.exp(v)
    return e / e.sum(axis=axis, keepdims=True)


def local_attention(x, params, stats, *, heads, kernel_size, reduction, stride, dilation, train, moments):
    """Eq. 4 with explicit loops. Returns (B, ceil(H/s), ceil(W/s), C)."""
    x = np.asarray(x, np.float64)
    b, h, w, c = x.shape
    g, k, s, d = heads, kernel_size, stride, dilation
    n = c // g
    t = grouped_conv1x1(x, params["logit_conv1"]["kernel"], params["logit_conv1"]["bias"], g)
    t = np.tanh(batch_norm(t, params["logit_bn1"], stats.get("logit_bn1"), train, moments, "logit_bn1"))
    t = grouped_conv1x1(t, params["logit_conv2"]["kernel"], params["logit_conv2"]["bias"], g)
    t = batch_norm(t, params["logit_bn2"], stats.get("logit_bn2"), train, moments, "logit_bn2")
    value = grouped_conv1x1(x, params["value_conv"]["kernel"], None, g)

    ho, wo = -(-h // s), -(-w // s)
    half = (k - 1) // 2
    out = np.zeros((b, ho, wo, c))
    for bi in range(b):
        for oy in range(ho):
            for ox in range(wo):
                cy, cx = oy * s, ox * s  # window centre in input coordinates
                logits = np.zeros((g, k * k))
                neigh_vals = np.zeros((g, n, k * k))
                for ky in range(k):
                    for kx in range(k):
                        kpos = ky * k + kx
                        yy, xx = cy + (ky - half) * d, cx + (kx - half) * d
                        inside = 0 <= yy < h and 0 <= xx < w
                        for gi in range(g):
                            omega = t[bi, cy, cx, g + gi * k * k + kpos]
                            nu = t[bi, yy, xx, gi] if inside else 0.0
                            logits[gi, kpos] = omega + nu
                            if inside:
                                neigh_vals[gi, :, kpos] = value[bi, yy, xx, gi * n:(gi + 1) * n]
                a = softmax(logits, axis=1)
                for gi in range(g):
                    out[bi, oy, ox, gi * n:(gi + 1) * n] = neigh_vals[gi] @ a[gi]
    return out


def mode_attention(s_in, params, stats, *, heads, gate, interaction, train, moments):
    """Eq. 2, 5, 6 and L_d. Returns (y (B, H, W, C), L_d (B,))."""
    s_in = np.asarray(s_in, np.float64)
    b, h, w, c = s_in.shape
    g = heads
    n = c // g
    m = grouped_conv1x1(s_in, params["mask_conv1"]["kernel"], params["mask_conv1"]["bias"], g)
    m = np.tanh(batch_norm(m, params["mask_bn1"], stats.get("mask_bn1"), train, moments, "mask_bn1"))
    m = grouped_conv1x1(m, params["mask_conv2"]["kernel"], params["mask_conv2"]["bias"], g)
    m = batch_norm(m, params["mask_bn2"], stats.get("mask_bn2"), train, moments, "mask_bn2")

    masks = np.zeros((b, h, w, g))
    for bi in range(b):
        for gi in range(g):
            masks[bi, :, :, gi] = softmax(m[bi, :, :, gi].ravel(), axis=0).reshape(h, w)
    l_d = np.array([g - sum(masks[bi, i, j].max() for i in range(h) for j in range(w)) for bi in range(b)])

    heads_of = lambda a: a.reshape(b, h, w, g, n)  # noqa: E731  channel c = g*n + j
    sg = heads_of(s_in)
    z = np.zeros((b, g, n))
    for bi in range(b):
        for gi in range(g):
            for i in range(h):
                for j in range(w):
                    z[bi, gi] += masks[bi, i, j, gi] * sg[bi, i, j, gi]

    def gate_fn(v):
        return 1.0 / (1.0 + np.exp(-v)) if gate == "sigmoid" else softmax(v, axis=-1)

    def one_pass(feat, zz, bn_name):
        sim = np.zeros((b, h, w, g))
        for bi in range(b):
            for gi in range(g):
                sim[bi, :, :, gi] = feat[bi, :, :, gi, :] @ zz[bi, gi]
        r = gate_fn(batch_norm(sim, params[bn_name], stats.get(bn_name), train, moments, bn_name))
        return r[..., None] * zz[:, None, None, :, :] + feat

    y = one_pass(sg, z, "gate_bn1")
    if interaction:
        z2 = np.zeros_like(z)
        for bi in range(b):
            p = np.array([[z[bi, i] @ z[bi, j] for j in range(g)] for i in range(g)])
            p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
            p = softmax(p * math.sqrt(g), axis=1)
            for i in range(g):
                z2[bi, i] = sum(p[i, j] * z[bi, j] for j in range(g))
        y = one_pass(y, z2, "gate_bn2")
    return y.reshape(b, h, w, c), l_d


def stra_attention(x, variables, *, heads, kernel_size, reduction, stride, dilation, gate,
                   mode_attention_on, interaction, train):
    """StRAttention = local attention -> mode attention. Returns (y, L_d or None, moments)."""
    params = variables["params"]
    stats = variables.get("batch_stats", {})
    moments: dict = {}
    local_moments: dict = {}
    y = local_attention(
        x, params["local"], stats.get("local", {}), heads=heads, kernel_size=kernel_size,
        reduction=reduction, stride=stride, dilation=dilation, train=train, moments=local_moments)
    moments["local"] = local_moments
    l_d = None
    if mode_attention_on:
        mode_moments: dict = {}
        y, l_d = mode_attention(
            y, params["mode"], stats.get("mode", {}), heads=heads, gate=gate,
            interaction=interaction, train=train, moments=mode_moments)
        moments["mode"] = mode_moments
    return y, l_d, moments
