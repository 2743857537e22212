"""The non-local block of Wang et al. ("Non-local neural networks", CVPR 2018),
embedded-Gaussian form, on NHWC maps.

For a map x (B, H, W, C) seen as N = H*W positions x_i:

* Eq. 3, embedded Gaussian: f(x_i, x_j) = exp(theta(x_i)^T phi(x_j)), with
  theta, phi 1x1 convolutions C -> C' (``pairwise_logits`` gives the exponent),
* Eq. 1 with C(x) = sum_j f(x_i, x_j): the normalised affinity is a softmax
  over j (Sec. 3.2, "the self-attention form"; ``embedded_gaussian_affinity``),
  and y_i = sum_j softmax_j * g(x_j) with g a 1x1 convolution C -> C'
  (``nonlocal_response``),
* Eq. 6, the residual block: z_i = W_z y_i + x_i, where W_z is a 1x1
  convolution C' -> C followed by BatchNorm (``nonlocal_residual``).

C' = C // ``reduction`` (Wang Sec. 3.3: "half of the number of channels in
x", ``reduction=2``). The BatchNorm after W_z starts with scale *and* bias zero
(Wang Sec. 4.1), so a new block is the identity and can be inserted into a
pretrained network without changing it.

No subsampling: Wang et al. max-pool phi and g (Sec. 3.3) to cut the N x N
cost on large video / detection maps. On ReID inputs (256x128) the res4 map is
16x8 (N = 128 positions) and res3 32x16 (N = 512), so the affinity is at most
512 x 512 per image: cheap, and pooling would only blur a small map.

theta, phi, g and W_z have biases (PyTorch's default, as in fast-reid's
``Non_local``, whose tensors load into this block: ``convert/resnet.py``).
"""
from __future__ import annotations

import numbers
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stra_jax.layers.conv import kaiming_fan_out
from stra_jax.layers.norm import batch_norm
from stra_jax.layers.precision import accum_dtype


def pairwise_logits(theta: jax.Array, phi: jax.Array) -> jax.Array:
    """Eq. 3's exponent theta(x_i)^T phi(x_j) for all pairs of positions.

    theta, phi: (B, N, C'). Returns (B, N, N) (rows i, columns j) in at least
    float32: the dot products are accumulated there whatever the input dtype.
    """
    return jnp.einsum("bic,bjc->bij", theta, phi, preferred_element_type=accum_dtype(theta.dtype))


def embedded_gaussian_affinity(logits: jax.Array) -> jax.Array:
    """Eq. 3 normalised as in Eq. 1: f(x_i, x_j) / C(x) with f = exp(logits) and
    C(x) = sum_j f(x_i, x_j), i.e. a softmax over j (Wang Sec. 3.2).

    logits: (B, N, N). Returns (B, N, N) in at least float32; rows sum to 1.
    """
    return jax.nn.softmax(logits.astype(accum_dtype(logits.dtype)), axis=-1)


def nonlocal_response(affinity: jax.Array, g: jax.Array) -> jax.Array:
    """Eq. 1: y_i = 1/C(x) sum_j f(x_i, x_j) g(x_j), with ``affinity`` already normalised.

    affinity: (B, N, N) float32; g: (B, N, C'). Returns (B, N, C') in g's dtype,
    accumulated in at least float32.
    """
    y = jnp.einsum("bij,bjc->bic", affinity, g.astype(affinity.dtype),
                   preferred_element_type=accum_dtype(g.dtype))
    return y.astype(g.dtype)


def nonlocal_residual(wy: jax.Array, x: jax.Array) -> jax.Array:
    """Eq. 6: z_i = W_z y_i + x_i, where ``wy`` is W_z y (after its BatchNorm).

    wy, x: (B, H, W, C). Returns (B, H, W, C) in x's dtype.
    """
    return (wy + x).astype(x.dtype)


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al. Eq. 1, 3, 6) on (B, H, W, C).

    Submodules: ``theta``, ``phi``, ``g`` (1x1 convs C -> C // reduction, with
    bias), ``out_conv`` (W_z: 1x1 conv C // reduction -> C, with bias) and
    ``out_bn`` (BatchNorm, scale and bias zero-initialised: the block starts as
    the identity). Returns (B, H, W, C) in ``dtype``; the affinity and its
    softmax are computed in float32 whatever ``dtype``.
    """

    reduction: int = 2
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _check(self, channels: int) -> None:
        reduction = self.reduction
        ok = isinstance(reduction, numbers.Integral) and not isinstance(reduction, bool) and reduction >= 1
        if not ok or channels // reduction < 1:
            raise ValueError(f"NonLocalBlock {self.name or '(unnamed)'!r}: channels={channels}, "
                             f"reduction={reduction!r}: expected a positive integer reduction with "
                             "channels // reduction >= 1")

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"NonLocalBlock {self.name!r}: input shape {x.shape}: expected (B, H, W, C) NHWC")
        b, h, w, c = x.shape
        self._check(c)
        inner = c // self.reduction
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)

        def conv(features: int, name: str) -> nn.Conv:
            return nn.Conv(features, (1, 1), use_bias=True, kernel_init=kaiming_fan_out,
                           bias_init=nn.initializers.zeros, name=name, **kw)

        x = x.astype(self.dtype)
        theta = conv(inner, "theta")(x).reshape(b, h * w, inner)
        phi = conv(inner, "phi")(x).reshape(b, h * w, inner)
        g = conv(inner, "g")(x).reshape(b, h * w, inner)
        affinity = embedded_gaussian_affinity(pairwise_logits(theta, phi))
        y = nonlocal_response(affinity, g).reshape(b, h, w, inner)
        # BatchNorm bias defaults to zero; the zero scale makes W_z y = 0 at init (Sec. 4.1).
        wy = batch_norm(train, name="out_bn", scale_init=nn.initializers.zeros, **kw)(conv(c, "out_conv")(y))
        return nonlocal_residual(wy, x)
