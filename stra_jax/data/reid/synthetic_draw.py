"""Vectorised NumPy drawing for the synthetic pedestrian dataset (see ``synthetic``).

Every shape is a signed distance field (SDF, in pixels; negative inside) evaluated
on pixel-centre coordinates and turned into a one-pixel anti-aliased alpha
``clip(0.5 - sd, 0, 1)``; painting is ``canvas = (1 - a) * canvas + a * colour``.
A person is ~25 such operations, each vectorised over the shape's bounding box;
no per-pixel Python loop runs anywhere.

Images are float32 (H, W, 3) in [0, 255] until ``apply_camera`` quantises them.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from stra_jax.data.generated import palette

# Small shared palettes: every attribute is drawn from a handful of values, so
# many identities share any single attribute and only the combination (and
# where on the body each colour sits) is distinctive.
CLOTH = palette([
    (196, 32, 38), (34, 62, 158), (236, 234, 226), (28, 28, 32),
    (118, 120, 126), (40, 118, 52), (226, 196, 44), (112, 72, 42),
])  # red, blue, white, black, grey, green, yellow, brown
SKIN = palette([(236, 196, 170), (208, 160, 120), (160, 110, 75), (100, 66, 44)])
HAIR = palette([(22, 18, 16), (78, 48, 26), (206, 170, 96), (150, 148, 144)])
SHOES = palette([(20, 20, 22), (232, 232, 228), (96, 60, 34), (110, 110, 116)])
# Muted scene colours (walls, pavement) for the background.
SCENE = palette([
    (150, 146, 138), (118, 112, 100), (170, 160, 140), (96, 100, 104),
    (132, 92, 78), (88, 104, 88), (180, 178, 172), (70, 72, 78),
])

SOLID, HSTRIPES, VSTRIPES, CHECKS = range(4)
TROUSERS, SHORTS, SKIRT = range(3)


@dataclass(frozen=True)
class Identity:
    """Part attributes of one person (palette indices; -1 = absent)."""
    skin: int
    hair: int
    long_hair: bool
    hat: int            # cloth colour of a cap, -1 = bare head
    upper: int          # torso / sleeve colour
    upper2: int         # second colour of the texture
    upper_tex: int      # SOLID / HSTRIPES / VSTRIPES / CHECKS
    upper_period: float  # texture period as a fraction of the person's height
    long_sleeves: bool
    lower_shape: int    # TROUSERS / SHORTS / SKIRT
    lower: int
    lower2: int
    lower_tex: int
    lower_period: float
    shoes: int
    bag: int            # cloth colour of a shoulder bag, -1 = no bag
    bag_side: int       # +1: bag on the image's right (before any flip), -1: left
    height: float       # relative body height
    build: float        # relative body width


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw independent part attributes (each from a small palette)."""
    n = len(CLOTH)
    upper, lower = rng.choice(n, 2, replace=False)
    return Identity(
        skin=int(rng.integers(len(SKIN))), hair=int(rng.integers(len(HAIR))),
        long_hair=bool(rng.random() < 0.3),
        hat=int(rng.integers(n)) if rng.random() < 0.2 else -1,
        upper=int(upper), upper2=int((upper + rng.integers(1, n)) % n),
        upper_tex=int(rng.choice(4, p=[0.45, 0.25, 0.15, 0.15])),
        upper_period=float(rng.uniform(0.035, 0.07)), long_sleeves=bool(rng.random() < 0.6),
        lower_shape=int(rng.choice(3, p=[0.6, 0.2, 0.2])),
        lower=int(lower), lower2=int((lower + rng.integers(1, n)) % n),
        lower_tex=int(rng.choice(4, p=[0.7, 0.15, 0.0, 0.15])),
        lower_period=float(rng.uniform(0.04, 0.08)),
        shoes=int(rng.integers(len(SHOES))),
        bag=int(rng.integers(n)) if rng.random() < 0.5 else -1,
        bag_side=int(rng.choice([-1, 1])),
        height=float(rng.uniform(0.9, 1.0)), build=float(rng.uniform(0.9, 1.15)),
    )


def swap_colours(ident: Identity) -> Identity:
    """A "colour twin": the same set of colours with upper and lower garments
    exchanged.  Its global colour histogram is nearly that of ``ident``; only the
    vertical arrangement tells them apart."""
    return replace(ident, upper=ident.lower, upper2=ident.lower2, upper_tex=ident.lower_tex,
                   upper_period=ident.lower_period, lower=ident.upper, lower2=ident.upper2,
                   lower_tex=ident.upper_tex, lower_period=ident.upper_period)


@dataclass(frozen=True)
class Camera:
    """Fixed per-camera appearance: colour response, optics and scene."""
    matrix: np.ndarray   # (3, 3) colour mixing, applied as rgb @ matrix.T
    bias: np.ndarray     # (3,) additive offset
    blur_sigma: float    # Gaussian blur in pixels (0 = sharp)
    wall: np.ndarray     # (3,) scene colour above the horizon (mixed with a per-image one)
    floor: np.ndarray    # (3,) ground colour below it (likewise)
    horizon: float       # horizon height as a fraction of the image height


def sample_camera(rng: np.random.Generator, color_cast: float, blur_fraction: float) -> Camera:
    """Colour gains and 3x3 mixing near identity (strength ``color_cast``), a
    bias, blur for a ``blur_fraction`` share of cameras, a scene (the spec's
    ``color_cast`` and ``blur_camera_fraction``)."""
    cast = color_cast
    gains = np.exp(rng.normal(0.0, cast, 3))
    mix = np.eye(3) + rng.normal(0.0, cast / 2, (3, 3))
    wall, floor = rng.choice(len(SCENE), 2, replace=False)
    bias = rng.normal(0.0, 6.0, 3).astype(np.float32)
    blur = float(rng.uniform(0.6, 1.3)) if rng.random() < blur_fraction else 0.0
    return Camera(matrix=(gains[:, None] * mix).astype(np.float32), bias=bias, blur_sigma=blur,
                  wall=SCENE[wall], floor=SCENE[floor], horizon=float(rng.uniform(0.5, 0.75)))


# ----------------------------------------------------------------------------- SDF shapes
# A shape is (sdf, bbox): sdf(x, y) -> signed distance in pixels, evaluated on a
# column vector y (h, 1) and row vector x (1, w) that broadcast to (h, w); bbox =
# (x0, y0, x1, y1) bounds the inside.  Painting evaluates the sdf only on the
# bbox window (plus a margin for the anti-aliased edge): most parts cover a few
# percent of the image, and this is what keeps an image around a millisecond.

Sdf = Callable[[np.ndarray, np.ndarray], np.ndarray]
Shape = tuple[Sdf, tuple[float, float, float, float]]
Colour = np.ndarray | Callable[[np.ndarray, np.ndarray], np.ndarray]
_MARGIN = 2  # px; the approximate ellipse sdf reaches 0.5 up to ~1 px outside its bbox


def _ellipse(cx, cy, rx, ry) -> Shape:
    # Exact on the axes, close enough elsewhere for one-pixel anti-aliasing.
    return ((lambda x, y: (np.hypot((x - cx) / rx, (y - cy) / ry) - 1.0) * min(rx, ry)),
            (cx - rx, cy - ry, cx + rx, cy + ry))


def _capsule(x0, y0, x1, y1, r) -> Shape:
    """Segment (x0, y0)-(x1, y1) thickened by radius r (a limb)."""
    dx, dy = x1 - x0, y1 - y0
    inv = 1.0 / (dx * dx + dy * dy + 1e-9)

    def sdf(x, y):
        t = np.clip(((x - x0) * dx + (y - y0) * dy) * inv, 0.0, 1.0)
        return np.hypot(x - x0 - t * dx, y - y0 - t * dy) - r
    return sdf, (min(x0, x1) - r, min(y0, y1) - r, max(x0, x1) + r, max(y0, y1) + r)


def _trapezoid(cx, y0, y1, hw0, hw1) -> Shape:
    """Axis-aligned trapezoid: half-width hw0 at row y0 growing linearly to hw1 at y1."""
    def sdf(x, y):
        hw = hw0 + np.clip((y - y0) / (y1 - y0), 0.0, 1.0) * (hw1 - hw0)
        return np.maximum(np.abs(x - cx) - hw, np.maximum(y0 - y, y - y1))
    return sdf, (cx - max(hw0, hw1), y0, cx + max(hw0, hw1), y1)


def _box(x0, y0, x1, y1) -> Shape:
    return ((lambda x, y: np.maximum(np.maximum(x0 - x, x - x1), np.maximum(y0 - y, y - y1))),
            (x0, y0, x1, y1))


def _above(shape: Shape, y_max: float) -> Shape:
    """The part of ``shape`` above row ``y_max`` (hair cap, cap crown)."""
    sdf, (x0, y0, x1, y1) = shape
    return (lambda x, y: np.maximum(sdf(x, y), y - y_max)), (x0, y0, x1, min(y1, y_max))


def _paint(canvas: np.ndarray, shape: Shape, colour: Colour) -> None:
    """Composite ``colour`` ((3,) or a texture callable) into ``canvas`` (H, W, 3)
    inside ``shape``, in place."""
    sdf, (x0, y0, x1, y1) = shape
    h, w = canvas.shape[:2]
    c0, c1 = max(int(np.floor(x0)) - _MARGIN, 0), min(int(np.ceil(x1)) + _MARGIN, w)
    r0, r1 = max(int(np.floor(y0)) - _MARGIN, 0), min(int(np.ceil(y1)) + _MARGIN, h)
    if c0 >= c1 or r0 >= r1:
        return
    x = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5
    y = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5
    a = np.clip(0.5 - sdf(x, y), 0.0, 1.0)[..., None]
    sub = canvas[r0:r1, c0:c1]
    sub *= 1.0 - a
    sub += a * (colour(x, y) if callable(colour) else colour)


def _texture(kind: int, c1: np.ndarray, c2: np.ndarray, x0: float, y0: float, period: float) -> Colour:
    """Colour of a garment; stripes are anchored at the body point (x0, y0) so
    they move and scale with the person."""
    if kind == SOLID:
        return c1

    def field(x, y):  # (1, w) and (h, 1) -> broadcastable to (h, w, 3)
        u = ((x - x0) / period) % 1.0 < 0.5
        v = ((y - y0) / period) % 1.0 < 0.5
        sel = v if kind == HSTRIPES else u if kind == VSTRIPES else u ^ v
        return np.where(sel[..., None], c2, c1)
    return field


# ----------------------------------------------------------------------------- scene

def draw_background(rng: np.random.Generator, cam: Camera, height: int, width: int,
                    clutter: float) -> np.ndarray:
    """(H, W, 3) float32 scene: wall / floor with a lighting gradient, plus
    per-image clutter shapes in clothing colours (so colour alone does not
    separate person from background).

    Wall and floor colours are half the camera's scene, half drawn per image:
    a fully fixed scene per camera made same-camera images of different people
    nearer in pixel space than cross-camera images of the same person (raw-pixel
    rank-1 fell to about chance); a fully random one removes camera bias.
    """
    h, w = height, width
    y = np.arange(h, dtype=np.float32)[:, None] + 0.5
    x = np.arange(w, dtype=np.float32)[None, :] + 0.5
    horizon = h * (cam.horizon + rng.uniform(-0.05, 0.05))
    shade = 1.0 + rng.uniform(-0.15, 0.15) * (y / h - 0.5) + rng.uniform(-0.1, 0.1) * (x / w - 0.5)
    own = SCENE[rng.choice(len(SCENE), 2, replace=False)]
    wall, floor = 0.5 * (own[0] + cam.wall), 0.5 * (own[1] + cam.floor)
    rows = np.where((y < horizon)[..., None], wall, floor)       # (H, 1, 3)
    canvas = (rows * shade[..., None]).astype(np.float32)
    for _ in range(int(rng.poisson(clutter))):
        colour = CLOTH[rng.integers(len(CLOTH))] * rng.uniform(0.6, 1.0)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        kind = rng.integers(3)
        if kind == 0:    # box (window, sign, car)
            rw, rh = rng.uniform(3, w / 3), rng.uniform(3, h / 4)
            shape = _box(cx - rw, cy - rh, cx + rw, cy + rh)
        elif kind == 1:  # pole
            rw = rng.uniform(1, 3)
            shape = _box(cx - rw, -1.0, cx + rw, h * rng.uniform(0.5, 1.0) + 1)
        else:            # blob (plant, passer-by)
            shape = _ellipse(cx, cy, rng.uniform(3, w / 4), rng.uniform(3, h / 6))
        _paint(canvas, shape, colour)
    return canvas


def draw_person(canvas: np.ndarray, p: Identity, cx: float, top: float, s: float,
                legs: tuple[float, float], arms: tuple[float, float]) -> None:
    """Paint person ``p`` (height ``s`` px, head top at row ``top``, centred on
    column ``cx``) into ``canvas`` (H, W, 3) in place.

    ``legs`` / ``arms``: outward angles (radians from vertical) of the left and
    right limbs, i.e. the pose.  Back-to-front painter's order: legs, lower
    garment, long hair, torso, arms, head, hat, bag.
    """
    b = p.build
    skin, hair = SKIN[p.skin], HAIR[p.hair]
    upper = _texture(p.upper_tex, CLOTH[p.upper], CLOTH[p.upper2], cx, top + 0.15 * s, p.upper_period * s)
    lower = _texture(p.lower_tex, CLOTH[p.lower], CLOTH[p.lower2], cx, top + 0.48 * s, p.lower_period * s)
    # Legs: a capsule per leg from the hip, shoes at the end.
    hip_y, leg_len, leg_r = top + 0.49 * s, 0.43 * s, 0.036 * s * b
    for side, angle in ((-1, legs[0]), (1, legs[1])):
        x0 = cx + side * 0.045 * s * b
        x1, y1 = x0 + side * np.sin(angle) * leg_len, hip_y + np.cos(angle) * leg_len
        leg = _capsule(x0, hip_y, x1, y1, leg_r)
        if p.lower_shape == TROUSERS:
            _paint(canvas, leg, lower)
        else:
            _paint(canvas, leg, skin)
            if p.lower_shape == SHORTS:  # the upper ~35% of the leg is covered
                xm, ym = x0 + 0.35 * (x1 - x0), hip_y + 0.35 * (y1 - hip_y)
                _paint(canvas, _capsule(x0, hip_y, xm, ym, leg_r * 1.15), lower)
        _paint(canvas, _ellipse(x1 + side * 0.01 * s, y1 + 0.012 * s, 0.042 * s, 0.022 * s),
               SHOES[p.shoes])
    if p.lower_shape == SKIRT:
        _paint(canvas, _trapezoid(cx, top + 0.46 * s, top + 0.70 * s, 0.095 * s * b, 0.15 * s * b), lower)
    else:  # waist block joining the two legs
        _paint(canvas, _trapezoid(cx, top + 0.46 * s, top + 0.56 * s, 0.095 * s * b, 0.085 * s * b), lower)
    head_cx, head_cy, head_rx, head_ry = cx, top + 0.07 * s, 0.05 * s, 0.065 * s
    if p.long_hair:  # hangs behind the shoulders
        _paint(canvas, _box(head_cx - 1.15 * head_rx, head_cy,
                            head_cx + 1.15 * head_rx, top + 0.24 * s), hair)
    # Torso (trapezoid + rounded shoulders) and neck.
    _paint(canvas, _trapezoid(cx, top + 0.16 * s, top + 0.50 * s, 0.115 * s * b, 0.095 * s * b), upper)
    _paint(canvas, _capsule(cx - 0.09 * s * b, top + 0.18 * s, cx + 0.09 * s * b, top + 0.18 * s,
                            0.03 * s), upper)
    # Arms: sleeve over the first part (all of it for long sleeves), then a hand.
    arm_len, arm_r = 0.31 * s, 0.027 * s * b
    for side, angle in ((-1, arms[0]), (1, arms[1])):
        x0, y0 = cx + side * 0.11 * s * b, top + 0.19 * s
        x1, y1 = x0 + side * np.sin(angle) * arm_len, y0 + np.cos(angle) * arm_len
        _paint(canvas, _capsule(x0, y0, x1, y1, arm_r), skin)
        f = 1.0 if p.long_sleeves else 0.35
        _paint(canvas, _capsule(x0, y0, x0 + f * (x1 - x0), y0 + f * (y1 - y0), arm_r * 1.1), upper)
        _paint(canvas, _ellipse(x1, y1 + 0.01 * s, 0.022 * s, 0.026 * s), skin)
    _paint(canvas, _capsule(cx, top + 0.11 * s, cx, top + 0.16 * s, 0.022 * s), skin)
    _paint(canvas, _ellipse(head_cx, head_cy, head_rx, head_ry), skin)
    # Hair cap: the part of a slightly larger ellipse above the forehead.
    _paint(canvas, _above(_ellipse(head_cx, head_cy - 0.005 * s, 1.1 * head_rx, 1.08 * head_ry),
                          head_cy - 0.02 * s), hair)
    if p.hat >= 0:
        hat = CLOTH[p.hat]
        _paint(canvas, _above(_ellipse(head_cx, head_cy - 0.015 * s, 1.12 * head_rx, 1.05 * head_ry),
                              head_cy - 0.03 * s), hat)
        _paint(canvas, _box(head_cx - 1.5 * head_rx, head_cy - 0.04 * s,
                            head_cx + 1.5 * head_rx, head_cy - 0.025 * s), hat)
    if p.bag >= 0:  # shoulder bag hanging at the hip, strap across the chest
        side, colour = p.bag_side, CLOTH[p.bag] * 0.9
        bx = cx + side * 0.15 * s * b
        _paint(canvas, _capsule(cx - side * 0.08 * s * b, top + 0.17 * s, bx, top + 0.40 * s,
                                0.009 * s), colour)
        _paint(canvas, _box(bx - 0.05 * s, top + 0.38 * s, bx + 0.05 * s, top + 0.53 * s), colour)


def draw_occluder(rng: np.random.Generator, canvas: np.ndarray, cx: float, top: float, s: float) -> None:
    """Cover part of the person with a clutter object: either something in
    front of the legs (bench, car, another pedestrian's bag) or a side post."""
    colour = CLOTH[rng.integers(len(CLOTH))] * rng.uniform(0.6, 1.0)
    colour2 = SCENE[rng.integers(len(SCENE))]
    tex = _texture(int(rng.integers(4)), colour, colour2, 0.0, 0.0, float(rng.uniform(4, 10)))
    far = 1e4  # "to the image border"
    if rng.random() < 0.6:
        y0 = top + s * rng.uniform(0.55, 0.8)
        x0 = cx + s * rng.uniform(-0.6, -0.05)
        shape = _box(x0, y0, x0 + s * rng.uniform(0.3, 0.7), far)
    else:
        edge = cx + s * rng.uniform(-0.02, 0.1)
        y0 = top + s * rng.uniform(-0.1, 0.4)
        shape = _box(edge, y0, far, far) if rng.random() < 0.5 else _box(-far, y0, 2 * cx - edge, far)
    _paint(canvas, shape, tex)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (H, W, 3) as a few shifted adds (edge padded)."""
    r = max(1, int(np.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    h, w = img.shape[:2]
    p = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="edge")
    img = sum(k[i] * p[i:i + h] for i in range(2 * r + 1))
    p = np.pad(img, ((0, 0), (r, r), (0, 0)), mode="edge")
    return sum(k[i] * p[:, i:i + w] for i in range(2 * r + 1))


def apply_camera(img: np.ndarray, cam: Camera, rng: np.random.Generator, *,
                 brightness: float, noise_std: float, extra_blur: float = 0.0) -> np.ndarray:
    """Camera colour response, per-image brightness, optics blur and sensor
    noise; (H, W, 3) float -> (H, W, 3) uint8."""
    img = (img @ cam.matrix.T + cam.bias) * brightness
    sigma = float(np.hypot(cam.blur_sigma, extra_blur))
    if sigma > 0.0:
        img = _blur(img, sigma)
    if noise_std > 0.0:
        img = img + rng.normal(0.0, noise_std, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
