"""Vectorised NumPy drawing of the synthetic classification set's "generic" kind
(see ``synthetic``): a class is a fixed random :class:`Composition` -- a
background texture and 1-3 foreground shapes -- and :func:`render_composition`
draws one jittered view of it.

Shapes are signed distance fields like ``stra_jax.data.reid.synthetic_draw``'s,
but in a shape's own rotated, aspect-scaled frame: ``(u, v)`` are pixel
offsets from the centre rotated by the shape's angle and divided by its half
sizes, so one "unit" SDF per shape type serves every size, aspect and angle.
The unit distance times the smaller half size approximates the distance in
pixels, which is all the one-pixel anti-aliasing ``clip(0.5 - sd, 0, 1)``
needs. Each shape is evaluated only on its bounding window.

Images are float32 (H, W, 3) in [0, 255] until :func:`render_composition`
quantises them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stra_jax.data.generated import palette

# Shared palettes: every class draws its colours from these few values, so any
# one colour is common to many classes and only combinations (with shape and
# layout) are distinctive.
FOREGROUND = palette([
    (200, 36, 40), (232, 128, 28), (232, 204, 48), (44, 140, 60), (30, 150, 150), (36, 70, 170),
    (120, 60, 160), (226, 110, 170), (240, 240, 236), (26, 26, 30), (128, 128, 132), (120, 78, 44),
])  # red, orange, yellow, green, teal, blue, purple, pink, white, black, grey, brown
BACKGROUND = palette([
    (156, 150, 140), (108, 104, 96), (186, 178, 160), (84, 92, 104), (140, 100, 84),
    (96, 116, 92), (200, 198, 192), (60, 62, 70), (150, 160, 180), (176, 150, 110),
])  # muted scene tones: the shapes usually stand out from them

B_SOLID, B_GRADIENT, B_STRIPES, B_CHECKS, B_BLOBS = range(5)
BACKGROUND_NAMES = ("solid", "gradient", "stripes", "checks", "blobs")
ELLIPSE, RECT, TRIANGLE, RING, CROSS, STAR, BLOB = range(7)
SHAPE_NAMES = ("ellipse", "rectangle", "triangle", "ring", "cross", "star", "blob")
_COLOUR_JITTER = 0.03  # std of per-image log colour gains (white balance)


@dataclass(frozen=True)
class Part:
    """One foreground shape of a class, in image fractions (before jitter)."""
    kind: int                  # ELLIPSE .. BLOB
    colour: int                # FOREGROUND index
    colour2: int               # second colour of a stripe texture, -1 = plain
    texture_angle: float       # radians
    texture_period: float      # stripe period in units of the shape's half size
    cx: float                  # centre column, fraction of the width
    cy: float                  # centre row, fraction of the height
    size: float                # half size, fraction of min(height, width)
    aspect: float              # width / height of the shape
    angle: float               # rotation, radians
    wobble: tuple[float, float, float, float]  # BLOB outline harmonics (a2, phase2, a3, phase3)


@dataclass(frozen=True)
class Composition:
    """Everything fixed about a class: background texture and its foreground parts."""
    background: int            # B_SOLID .. B_BLOBS
    bg1: int                   # BACKGROUND indices
    bg2: int
    bg_angle: float            # stripes / checks / gradient direction, radians
    bg_period: float           # texture period or blob size, fraction of min(height, width)
    parts: tuple[Part, ...]    # painted in order (later ones in front)


def _wobble(rng: np.random.Generator) -> tuple[float, float, float, float]:
    return (float(rng.uniform(0.06, 0.18)), float(rng.uniform(0, 2 * math.pi)),
            float(rng.uniform(0.06, 0.18)), float(rng.uniform(0, 2 * math.pi)))


def sample_composition(rng: np.random.Generator) -> Composition:
    """Draw a class: every attribute from a small shared vocabulary, so only
    the combination (and layout) identifies it."""
    background = int(rng.choice(5, p=[0.15, 0.2, 0.25, 0.2, 0.2]))
    bg1, bg2 = (int(i) for i in rng.choice(len(BACKGROUND), 2, replace=False))
    bg_angle = float(rng.integers(4)) * math.pi / 4
    bg_period = float(rng.choice([0.12, 0.2, 0.3]))
    n = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    size_range = {1: (0.28, 0.42), 2: (0.2, 0.3), 3: (0.15, 0.24)}[n]
    # Centres spread down the (tall) frame: part i in the i-th of n bands, so
    # parts overlap a little at most and the layout (which is on top) matters.
    order = rng.permutation(n)
    parts = []
    for i in range(n):
        textured = rng.random() < 0.3
        colour = int(rng.integers(len(FOREGROUND)))
        parts.append(Part(
            kind=int(rng.integers(len(SHAPE_NAMES))), colour=colour,
            colour2=int((colour + rng.integers(1, len(FOREGROUND))) % len(FOREGROUND)) if textured else -1,
            texture_angle=float(rng.integers(4)) * math.pi / 4, texture_period=float(rng.choice([0.5, 0.8])),
            cx=float(rng.uniform(0.3, 0.7)), cy=float((order[i] + rng.uniform(0.3, 0.7)) / n * 0.8 + 0.1),
            size=float(rng.uniform(*size_range)), aspect=float(math.exp(rng.uniform(-0.4, 0.4))),
            angle=float(rng.uniform(0, math.pi)), wobble=_wobble(rng)))
    return Composition(background, bg1, bg2, bg_angle, bg_period, tuple(parts))


# ----------------------------------------------------------------------------- shapes

def _unit_sdf(kind: int, u: np.ndarray, v: np.ndarray, wobble: tuple[float, float, float, float]) -> np.ndarray:
    """Signed distance (negative inside) of a unit shape (extent ~1) at (u, v)."""
    if kind == ELLIPSE:
        return np.hypot(u, v) - 1.0
    if kind == RECT:
        return np.maximum(np.abs(u), np.abs(v)) - 0.85
    if kind == TRIANGLE:  # equilateral, circumradius 1, apex up (-v); edge normals at 90 + 120k deg
        a = np.array([math.pi / 2 + 2 * math.pi * k / 3 for k in range(3)])
        return np.max([u * math.cos(t) + v * math.sin(t) for t in a], axis=0) - 0.5
    if kind == RING:
        return np.abs(np.hypot(u, v) - 0.72) - 0.28
    if kind == CROSS:
        au, av = np.abs(u), np.abs(v)
        return np.minimum(np.maximum(au - 1.0, av - 0.32), np.maximum(au - 0.32, av - 1.0))
    rho, theta = np.hypot(u, v), np.arctan2(v, u)
    if kind == STAR:  # five points: the radius follows a triangle wave in the angle
        f = np.abs((theta * 5 / (2 * math.pi)) % 1.0 - 0.5) * 2.0
        return (rho - (0.45 + 0.6 * f)) * 0.5  # the outline is steep: scale towards a distance
    if kind == BLOB:
        a2, p2, a3, p3 = wobble
        return rho - (0.88 + a2 * np.cos(2 * theta + p2) + a3 * np.cos(3 * theta + p3))
    raise ValueError(f"shape kind {kind} is not one of 0..{len(SHAPE_NAMES) - 1}")


def _stripes(t: np.ndarray, period_px: float) -> np.ndarray:
    """Anti-aliased square wave in [0, 1] of the phase ``t`` (in periods)."""
    return np.clip(0.5 - (np.abs(t % 1.0 - 0.5) - 0.25) * period_px, 0.0, 1.0)


def paint_shape(canvas: np.ndarray, kind: int, cx: float, cy: float, r: float, aspect: float, angle: float,
                colour: np.ndarray, *, colour2: np.ndarray | None = None, texture_angle: float = 0.0,
                texture_period: float = 0.5, wobble: tuple[float, float, float, float] = (0, 0, 0, 0)) -> None:
    """Composite one shape into ``canvas`` (H, W, 3) float32 in place.

    Centre (cx, cy) and half size ``r`` in pixels, ``aspect`` = width / height,
    ``angle`` in radians; ``colour2``: stripes of that colour (angle and period
    in the shape's frame, so the texture turns and scales with the shape).
    """
    ax = math.sqrt(aspect)
    sx, sy = r * ax, r / ax
    reach = 1.5 * max(sx, sy) + 2.0  # the unit shapes lie within radius ~1.1
    h, w = canvas.shape[:2]
    c0, c1 = max(int(cx - reach), 0), min(int(math.ceil(cx + reach)), w)
    r0, r1 = max(int(cy - reach), 0), min(int(math.ceil(cy + reach)), h)
    if c0 >= c1 or r0 >= r1:
        return
    dx = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5 - cx
    dy = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5 - cy
    cos, sin = math.cos(angle), math.sin(angle)
    u = (cos * dx + sin * dy) / sx
    v = (cos * dy - sin * dx) / sy
    a = np.clip(0.5 - _unit_sdf(kind, u, v, wobble) * min(sx, sy), 0.0, 1.0)[..., None]
    fill: np.ndarray = colour
    if colour2 is not None:
        t = (u * math.cos(texture_angle) + v * math.sin(texture_angle)) / texture_period
        fill = colour + _stripes(t, texture_period * min(sx, sy))[..., None] * (colour2 - colour)
    sub = canvas[r0:r1, c0:c1]
    sub *= 1.0 - a
    sub += a * fill


def draw_background(comp: Composition, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(H, W, 3) float32 background of ``comp``; the texture's phase (and the
    blobs' places) vary per image, its type, colours, angle and scale do not."""
    y = np.arange(h, dtype=np.float32)[:, None] + 0.5
    x = np.arange(w, dtype=np.float32)[None, :] + 0.5
    c1, c2 = BACKGROUND[comp.bg1], BACKGROUND[comp.bg2]
    period = comp.bg_period * min(h, w)
    along = (x * math.cos(comp.bg_angle) + y * math.sin(comp.bg_angle))
    if comp.background == B_SOLID:
        mix = np.zeros((1, 1), np.float32)
    elif comp.background == B_GRADIENT:
        span = abs(w * math.cos(comp.bg_angle)) + abs(h * math.sin(comp.bg_angle))
        mix = np.clip((along - along.min()) / span + rng.uniform(-0.15, 0.15), 0.0, 1.0)
    elif comp.background == B_STRIPES:
        mix = _stripes(along / period + rng.random(), period)
    elif comp.background == B_CHECKS:
        across = -x * math.sin(comp.bg_angle) + y * math.cos(comp.bg_angle)
        p, q = _stripes(along / period + rng.random(), period), _stripes(across / period + rng.random(), period)
        mix = p + q - 2 * p * q  # anti-aliased XOR
    else:  # B_BLOBS: soft Gaussian blobs of the second colour at random places
        # (sparse enough that the first colour stays the ground in most images)
        k = int(rng.integers(3, 8))
        bx, by = rng.uniform(0, w, k).astype(np.float32), rng.uniform(0, h, k).astype(np.float32)
        d2 = (x[..., None] - bx) ** 2 + (y[..., None] - by) ** 2  # (H, W, k)
        mix = np.clip(np.exp(-d2 / (2 * (0.4 * period) ** 2)).sum(-1) * 1.3, 0.0, 1.0)
    mix = np.broadcast_to(mix, (h, w))[..., None]
    return (c1 + mix * (c2 - c1)).astype(np.float32)


def render_composition(comp: Composition, rng: np.random.Generator, h: int, w: int, *,
                       scale_jitter: float, shift_jitter: float, shape_jitter: float, clutter: float,
                       flip_prob: float, brightness_jitter: float, contrast_jitter: float,
                       noise_std: float) -> np.ndarray:
    """One view of class ``comp``: (h, w, 3) uint8 RGB.

    Per image: the whole composition is scaled (log-uniform within
    +-``scale_jitter``) and shifted (uniform within +-``shift_jitter`` of the
    image size), each part moved (std ``shape_jitter`` of the image size),
    resized and turned a little; Poisson(``clutter``) random shapes (at most 6)
    from the same vocabulary and palette sit behind or in front of the parts;
    then a horizontal flip, brightness / contrast / white balance and Gaussian
    noise. Every draw comes from ``rng`` in a fixed order.
    """
    m = min(h, w)
    canvas = draw_background(comp, rng, h, w)
    scale = math.exp(rng.uniform(-scale_jitter, scale_jitter))
    shift_x, shift_y = rng.uniform(-shift_jitter, shift_jitter, 2) * (w, h)
    clutter_shapes = []
    for _ in range(min(int(rng.poisson(clutter)), 6)):
        clutter_shapes.append(dict(
            kind=int(rng.integers(len(SHAPE_NAMES))), cx=float(rng.uniform(0, w)), cy=float(rng.uniform(0, h)),
            r=float(rng.uniform(0.06, 0.14) * m), aspect=float(math.exp(rng.uniform(-0.5, 0.5))),
            angle=float(rng.uniform(0, math.pi)),
            colour=FOREGROUND[rng.integers(len(FOREGROUND))] * np.float32(rng.uniform(0.7, 1.0)),
            wobble=_wobble(rng), front=bool(rng.random() < 0.35)))
    for c in clutter_shapes:
        if not c["front"]:
            paint_shape(canvas, c["kind"], c["cx"], c["cy"], c["r"], c["aspect"], c["angle"], c["colour"],
                        wobble=c["wobble"])
    for p in comp.parts:
        jx, jy = rng.normal(0.0, shape_jitter, 2) * (w, h)
        cx = w / 2 + scale * (p.cx * w - w / 2) + shift_x + jx
        cy = h / 2 + scale * (p.cy * h - h / 2) + shift_y + jy
        r = p.size * m * scale * math.exp(rng.normal(0.0, 0.05))
        angle = p.angle + rng.normal(0.0, 0.15)
        paint_shape(canvas, p.kind, cx, cy, r, p.aspect, angle, FOREGROUND[p.colour],
                    colour2=FOREGROUND[p.colour2] if p.colour2 >= 0 else None,
                    texture_angle=p.texture_angle, texture_period=p.texture_period, wobble=p.wobble)
    for c in clutter_shapes:
        if c["front"]:
            paint_shape(canvas, c["kind"], c["cx"], c["cy"], c["r"], c["aspect"], c["angle"], c["colour"],
                        wobble=c["wobble"])
    if rng.random() < flip_prob:
        canvas = canvas[:, ::-1]
    contrast = math.exp(contrast_jitter * rng.standard_normal())
    brightness = math.exp(brightness_jitter * rng.standard_normal())
    gains = np.exp(rng.normal(0.0, _COLOUR_JITTER, 3)).astype(np.float32)
    mean = canvas.mean((0, 1))
    img = ((canvas - mean) * contrast + mean) * (brightness * gains)
    if noise_std > 0.0:
        img = img + rng.normal(0.0, noise_std, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
