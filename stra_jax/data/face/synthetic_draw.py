"""Vectorised NumPy drawing of synthetic aligned face crops (see ``face.synthetic``).

An S x S image spans [-1, 1]^2 (x right, y down).  The head is drawn in *head
units* (image units before the per-image scale / shift / roll jitter): face
centre (0, ``FACE_CY``), eyes near y = -0.1, chin near 0.95, roughly insightface's
112 x 112 alignment.  Pose: each row of the head is a vertical cylinder whose
radius R is the head half-width there; eyes, brows, mouth and hairline live in
face-surface coordinates u = R sin(phi), v (the row), with sin(phi) = (X/R)
cos(yaw) - sqrt(1 - (X/R)^2) sin(yaw) -- with yaw they shift sideways, the far
side compresses and disappears, the back of the head (hair, an ear) turns into
view; the nose leans out by its depth * sin(yaw) and sticks out in profile.
Shapes are signed distances (head units, < 0 inside) evaluated on the pixel grid
(small parts on a window around them), turned into anti-aliased alpha
clip(0.5 - sd * pixels_per_unit, 0, 1) and composited in painter's order onto a
channel-first float32 (3, S, S) canvas; no per-pixel Python loop runs
(drawing times: docs/results.md).  ``render_face`` returns (S, S, 3) uint8 RGB.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stra_jax.data.generated import palette

# Small palettes: many identities share every colour attribute.
SKIN = palette([(241, 206, 178), (226, 180, 146), (200, 150, 112), (166, 116, 82), (124, 84, 58), (90, 60, 44)])
HAIR = palette([(26, 22, 20), (64, 42, 28), (112, 74, 42), (206, 172, 108), (146, 66, 34),
                 (168, 166, 162)])  # black, dark brown, brown, blond, auburn, grey
BROW = palette([(30, 24, 22), (62, 42, 30), (104, 72, 46), (170, 140, 96)])
IRIS = palette([(62, 40, 24), (118, 84, 44), (74, 112, 164), (78, 120, 76), (104, 106, 116)])
LIP = palette([(190, 96, 100), (160, 78, 76), (206, 128, 126), (128, 66, 64)])
BACKGROUND = palette([(200, 200, 196), (120, 130, 150), (60, 64, 70), (150, 170, 140), (190, 170, 140),
                       (90, 110, 140), (160, 110, 100), (230, 226, 210), (40, 48, 44), (130, 120, 110)])
OCCLUDER = palette([(20, 22, 26), (226, 228, 232), (126, 168, 210), (60, 60, 70), (170, 60, 60)])

BALD, SHORT, LONG, FRINGE = range(4)                 # hair styles
ROUND, ALMOND, NARROW = range(3)                     # eye shapes
NO_OCCLUSION, SUNGLASSES, MASK, HAND = range(4)      # occluders
FACE_CY = 0.06
_EYE_SHAPE = {ROUND: (0.62, 0.5), ALMOND: (0.46, 1.0), NARROW: (0.32, 0.9)}  # (height / width, lid exponent)


@dataclass(frozen=True)
class FaceIdentity:
    """One identity. Colours (palette indices) and hair style are shared by a
    look-alike family; the geometry (head units) is individual."""
    skin: int
    hair: int
    hair_style: int
    brow_colour: int
    iris: int
    lip: int
    face_w: float       # half-width of the head ellipse
    face_h: float       # half-height
    jaw: float          # widening of the lower half: < 0 pointed chin, > 0 square jaw
    hairline: float     # v of the hairline at the centre
    eye_y: float
    eye_spacing: float  # half the distance between the eye centres
    eye_size: float     # eye half-width
    eye_shape: int
    eye_tilt: float     # slope of the eye axis, > 0: outer corner up
    brow_gap: float     # brow centre above the eye centre
    brow_thick: float
    brow_angle: float   # radians, > 0: outer end up
    brow_arch: float
    nose_len: float     # eye line to nose tip
    nose_w: float       # half-width of the nose base
    mouth_gap: float    # nose tip to mouth line
    mouth_w: float      # mouth half-width
    lip_thick: float


def sample_appearance(rng: np.random.Generator) -> dict[str, int]:
    """Colours and hair style of a look-alike family."""
    return dict(skin=int(rng.integers(len(SKIN))), hair=int(rng.integers(len(HAIR))),
                hair_style=int(rng.choice(4, p=[0.15, 0.35, 0.3, 0.2])),
                brow_colour=int(rng.integers(len(BROW))), iris=int(rng.integers(len(IRIS))),
                lip=int(rng.integers(len(LIP))))


def sample_identity(appearance: dict[str, int], rng: np.random.Generator) -> FaceIdentity:
    """``appearance`` (shared colours) plus individual part geometry from ``rng``."""
    u = rng.uniform
    return FaceIdentity(
        **appearance, face_w=u(0.64, 0.8), face_h=u(0.84, 0.95), jaw=u(-0.3, 0.3),
        hairline=u(-0.72, -0.5), eye_y=u(-0.2, -0.08), eye_spacing=u(0.24, 0.34),
        eye_size=u(0.085, 0.13), eye_shape=int(rng.integers(3)), eye_tilt=u(-0.15, 0.25),
        brow_gap=u(0.11, 0.19), brow_thick=u(0.022, 0.06), brow_angle=u(-0.3, 0.3),
        brow_arch=u(0.0, 0.045), nose_len=u(0.24, 0.38), nose_w=u(0.06, 0.11),
        mouth_gap=u(0.14, 0.24), mouth_w=u(0.15, 0.26), lip_thick=u(0.03, 0.07))


@dataclass(frozen=True)
class FaceNuisance:
    """Everything about one image that is not identity (angles in radians);
    drawn by ``synthetic.sample_nuisance``."""
    yaw: float
    pitch: float
    roll: float
    scale: float
    shift_x: float
    shift_y: float
    smile: float        # -0.3 (frown) .. 1
    mouth_open: float   # 0 .. 1
    eye_open: float     # 0.1 (blink) .. 1.1
    gaze: float         # iris offset, fraction of the eye half-width
    light_azimuth: float
    light_strength: float   # 0: flat, 0.7: strong side light
    brightness: float
    blur: float         # Gaussian sigma, pixels
    occlusion: int
    occ_colour: int
    occ_x: float
    occ_y: float
    occ_angle: float
    background: tuple[int, int]
    bg_angle: float
    noise_seed: int     # background texture and sensor noise
    noise_std: float


def _blotches(rng: np.random.Generator, size: int, cells: int = 5) -> np.ndarray:
    """Low-frequency noise (size, size), std ~1: a random (cells, cells) grid,
    upsampled bilinearly with a few multiply-adds (no BLAS call: no thread start-up)."""
    pos = (np.arange(size) + 0.5) / size * (cells - 1)
    m = np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(cells))).astype(np.float32)  # (size, cells)
    grid = rng.standard_normal((cells, cells), dtype=np.float32)
    rows = sum(m[:, i:i + 1] * grid[i] for i in range(cells))          # (size, cells)
    return sum(rows[:, j:j + 1] * m[:, j] for j in range(cells))       # (size, size)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of channel-first (3, H, W) float32, edge clamped (shifted adds)."""
    r = max(1, int(np.ceil(2.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    h, w = img.shape[1:]
    p = img[:, np.clip(np.arange(-r, h + r), 0, h - 1)]
    img = sum(k[i] * p[:, i:i + h] for i in range(2 * r + 1))
    p = img[:, :, np.clip(np.arange(-r, w + r), 0, w - 1)]
    return sum(k[i] * p[:, :, i:i + w] for i in range(2 * r + 1))


def _unit(x: np.ndarray) -> np.ndarray:
    """clip(x, 0, 1) (np.clip has a large fixed cost on small arrays)."""
    return np.minimum(np.maximum(x, 0.0), 1.0)


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return (np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) - 1.0) * min(rx, ry)


def _band(u: np.ndarray, v: np.ndarray, top: np.ndarray, bottom: np.ndarray, half_w: float) -> np.ndarray:
    """Region top(u) < v < bottom(u), |u| < half_w (lips, mouth opening)."""
    return np.maximum(np.maximum(top - v, v - bottom), np.abs(u) - half_w)


_DARK, _SCLERA, _PUPIL = (np.array(c, np.float32) for c in ((34, 24, 22), (232, 226, 218), (12, 10, 10)))
_MOUTH, _TEETH = np.array((70, 26, 30), np.float32), np.array((226, 220, 208), np.float32)
_FULL = (slice(None), slice(None))


def render_face(p: FaceIdentity, n: FaceNuisance, size: int = 112) -> np.ndarray:
    """Draw identity ``p`` under nuisance ``n``: (size, size, 3) uint8 RGB."""
    s = size
    g = np.arange(s, dtype=np.float32) * (2.0 / s) + (1.0 / s - 1.0)
    xi, yi = g[None, :], g[:, None]
    ppu = 0.5 * s * n.scale  # pixels per head unit
    rng = np.random.default_rng(n.noise_seed)

    # Background: two-colour gradient and low-frequency blotches.
    b0, b1 = BACKGROUND[n.background[0]], BACKGROUND[n.background[1]]
    t = _unit(0.5 + 0.35 * (math.cos(n.bg_angle) * xi + math.sin(n.bg_angle) * yi))
    tint = rng.normal(0, 16, (3, 1, 1)).astype(np.float32)
    # The canvas is channel-first (3, S, S) while drawing: broadcasting a colour
    # (3, 1, 1) then runs NumPy's inner loops over image rows, not over 3 channels.
    canvas = b0[:, None, None] + t * (b1 - b0)[:, None, None] + _blotches(rng, s) * tint

    cr, sr = math.cos(n.roll), math.sin(n.roll)
    sy, cyaw = math.sin(n.yaw), math.cos(n.yaw)
    a, b = p.face_w, p.face_h
    spitch = 0.35 * math.sin(n.pitch)
    pv = abs(spitch)

    def radius(hy_: float) -> float:
        """Half-width of the head at head-unit row ``hy_`` (the cylinder radius there)."""
        t_ = hy_ / b
        return a * math.sqrt(max(1 - t_ * t_, 0.0)) * (1 + p.jaw * min(max(t_, 0.0), 1.0))

    def win(x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        """Pixel window covering the head-unit box [x0, x1] x [y0, y1] (2 px margin)."""
        corners = [(x, y) for x in (x0, x1) for y in (y0, y1)]
        ix = [(n.scale * (cr * x - sr * y) + n.shift_x + 1) * (s / 2) - 0.5 for x, y in corners]
        iy = [(n.scale * (sr * x + cr * y) + n.shift_y + 1) * (s / 2) - 0.5 for x, y in corners]
        return (slice(max(int(min(iy)) - 2, 0), max(int(max(iy)) + 3, 0)),
                slice(max(int(min(ix)) - 2, 0), max(int(max(ix)) + 3, 0)))

    def uwin(u0: float, u1: float, v0: float, v1: float) -> tuple[slice, slice]:
        """Pixel window of the face-surface box [u0, u1] x [v0, v1]."""
        y0, y1 = v0 - pv, v1 + pv
        xs = [r * math.sin(min(max(math.asin(min(max(uu / r, -1.0), 1.0)) + n.yaw, -math.pi / 2), math.pi / 2))
              for r in (a * (1 + max(p.jaw, 0)), max(min(radius(y0), radius(y1)), 1e-3)) for uu in (u0, u1)]
        return win(min(xs), max(xs), y0 + FACE_CY, y1 + FACE_CY)

    def paint(w: tuple[slice, slice], sd: np.ndarray, colour, weight=1.0) -> None:
        """Composite ``colour`` ((3,) or a full (3, S, S) texture) where ``sd`` < 0;
        ``sd`` is given on the pixel window ``w``; a full-image one is cropped to alpha > 0."""
        al = _unit(0.5 - sd * ppu)
        if np.ndim(weight) or weight != 1.0:
            al = al * weight
        if w is _FULL:
            rows, cols = np.flatnonzero(al.max(1) > 0), np.flatnonzero(al.max(0) > 0)
            if rows.size == 0:
                return
            w = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            al = al[w]
        cw = (slice(None), *w)
        sub = canvas[cw]
        sub += al * ((colour[cw] if np.ndim(colour) == 3 else colour[:, None, None]) - sub)

    # Head units (undo shift, roll, scale); the head outline is an ellipse whose
    # lower half is widened (square jaw) or narrowed (pointed chin) by ``jaw``.
    dx, dy = xi - n.shift_x, yi - n.shift_y
    X, Y = (cr * dx + sr * dy) / n.scale, (cr * dy - sr * dx) / n.scale
    hy = Y - FACE_CY
    skin, hair = SKIN[p.skin], HAIR[p.hair]
    widen = 1 + p.jaw * _unit(hy / b)
    tyy = (hy / b) ** 2
    sd_head = (np.sqrt((X / (a * widen)) ** 2 + tyy) - 1.0) * min(a, b)
    inside = _unit(0.5 - sd_head * ppu)
    # Face-surface coordinates on the cylinder of radius R (the head half-width of
    # the row): sin(phi) = rx cos(yaw) - sqrt(1 - rx^2) sin(yaw), rx = X / R.
    R = np.maximum(a * widen * np.sqrt(np.maximum(1 - tyy, 0.0)), 1e-3)
    rx = np.minimum(np.maximum(X / R, -1.0), 1.0)
    crx = np.sqrt(1 - rx * rx)
    cphi = crx * cyaw + rx * sy                               # cos(phi): 1 facing the camera
    u = np.where((cphi > 0.05) & (np.abs(X) < R), R * (rx * cyaw - crx * sy), 9.0)
    v = hy - spitch * cphi

    if p.hair_style != BALD:
        hair_tex = hair[:, None, None] * (1.0 + 0.05 * np.sin(55 * X + 9 * Y) + 0.03 * np.sin(23 * X - 5 * Y))
    if p.hair_style == LONG:  # behind the head and shoulders
        xb = X + 0.25 * a * sy
        paint(_FULL, np.maximum(np.maximum(np.abs(xb) - 1.22 * a, hy - 1.15 * b),
                                _ellipse(xb, hy, 0.0, 0.1, 1.4 * a, 1.2 * b)), hair_tex)
    paint(_FULL, np.maximum(np.abs(X + 0.1 * sy) - 0.55 * a, 0.3 * b - hy), skin * 0.82)   # neck
    ears = []
    if p.hair_style != LONG:  # ears at phi = +-1.65: behind the head unless turned towards the camera
        for side in (-1, 1):
            ang = side * 1.65 + n.yaw
            if math.cos(ang) > -0.35:
                ey = p.eye_y + 0.5 * p.nose_len
                ex = radius(ey) * math.sin(ang)
                ears.append((abs(ex) > 0.92 * a, ex, ey, 0.035 + 0.06 * abs(math.cos(ang))))
    for behind, ex, ey, rx_ in ears:
        if behind:
            w = win(1.04 * ex - rx_, 1.04 * ex + rx_, ey + FACE_CY - 0.16, ey + FACE_CY + 0.16)
            paint(w, _ellipse(X[w], hy[w], ex * 1.04, ey, rx_, 0.14), skin * 0.9)
    paint(_FULL, sd_head, skin)
    if p.hair_style != BALD:  # back of the head (|phi| > 1.2) turned into view
        low = 0.95 * b if p.hair_style == LONG else 0.3 * b
        paint(_FULL, np.maximum(np.maximum(sd_head, (cphi - math.cos(1.2)) * a), hy - low), hair_tex)
    for behind, ex, ey, rx_ in ears:
        if not behind:
            w = win(ex - rx_, ex + rx_, ey + FACE_CY - 0.16, ey + FACE_CY + 0.16)
            paint(w, _ellipse(X[w], hy[w], ex, ey, rx_, 0.14), skin * 0.9)
            paint(w, _ellipse(X[w], hy[w], ex, ey, 0.5 * rx_, 0.08), skin * 0.7)

    # Nose, in head units: from its root on the face surface it leans out by
    # depth * sin(yaw); beyond the cheek line (profile) it is opaque skin.
    top, tip = p.eye_y + 0.02, p.eye_y + p.nose_len
    depth = 0.55 * p.nose_len
    xt = (radius(tip) + depth) * sy
    mx = p.nose_w + 0.05
    w = win(min(a * sy, xt) - mx, max(a * sy, xt) + mx, top + FACE_CY - pv, tip + 0.04 + FACE_CY + pv)
    Xw, vw, outw = X[w], v[w], 1 - inside[w]
    tn = _unit((vw - top) / (tip - top))
    root = R[w] * sy
    lean = root + depth * tn * sy
    hw = (0.02 + (p.nose_w - 0.02) * tn * tn) * (0.4 + 0.6 * abs(cyaw))
    sd_nose = np.maximum(np.maximum(np.minimum(root, lean) - hw - Xw, Xw - np.maximum(root, lean) - hw),
                         np.maximum(top - vw, vw - tip))
    paint(w, sd_nose, skin, outw)
    paint(w, sd_nose, skin * 0.8, (0.2 + 0.6 * tn) * (1 - outw))
    tip_shape = _ellipse(Xw, vw, xt, tip - 0.012, p.nose_w * 0.6 * (0.5 + 0.5 * abs(cyaw)), 0.04)
    paint(w, tip_shape, skin * 1.04, np.maximum(0.7, outw))
    for side in (-1, 1):
        if side * n.yaw < 0.6:  # the far nostril disappears in profile
            paint(w, _ellipse(Xw, vw, xt + side * 0.55 * p.nose_w * cyaw, tip + 0.012,
                              0.026 * (0.35 + 0.65 * abs(cyaw)), 0.013), skin * 0.35)

    # Mouth: centre line bends up with a smile, lips part when open.
    mw = p.mouth_w * (1 + 0.12 * n.smile)
    my = tip + p.mouth_gap
    w = uwin(-mw, mw, my - 0.16, my + 0.16)
    uw, vw, inw = u[w], v[w], inside[w]
    q2 = _unit(np.abs(uw) / mw) ** 2
    shape = 1 - q2
    yc = my - 0.05 * n.smile * q2
    gap = 0.07 * n.mouth_open * shape + 0.006
    bow = 1 - 0.3 * np.exp(-(uw / 0.03) ** 2)
    paint(w, _band(uw, vw, yc - gap / 2, yc + gap / 2, mw), _MOUTH, inw)
    if n.mouth_open > 0.3:
        paint(w, _band(uw, vw, yc - gap / 2, yc - gap / 6, mw * 0.7), _TEETH, inw)
    lip = 0.6 * LIP[p.lip] + 0.4 * skin * np.array([0.9, 0.7, 0.7], np.float32)
    paint(w, _band(uw, vw, yc - gap / 2 - p.lip_thick * 0.8 * shape ** 0.6 * bow, yc - gap / 2, mw), lip * 0.92, inw)
    paint(w, _band(uw, vw, yc + gap / 2, yc + gap / 2 + p.lip_thick * np.sqrt(shape), mw), lip, inw)

    # Eyes and brows, mirrored about u = 0 (dxm > 0: towards the outer corner).
    ratio, lid = _EYE_SHAPE[p.eye_shape]
    ew = p.eye_size
    eh = ew * ratio
    L = 1.3 * ew
    open_ = n.eye_open * (1 - 0.2 * max(n.smile, 0.0))
    brow_y = p.eye_y - p.brow_gap - 0.025 * n.mouth_open
    tan_b = math.tan(p.brow_angle)
    for side in (-1, 1):
        ex = side * p.eye_spacing
        w = uwin(ex - L - 0.03, ex + L + 0.03, brow_y - p.brow_arch - abs(tan_b) * L - p.brow_thick - 0.01,
                 p.eye_y + eh + abs(p.eye_tilt) * ew + 0.03)
        uw, vw, inw = u[w], v[w], inside[w]
        dxm = (uw - ex) * side
        dy = vw - p.eye_y + p.eye_tilt * dxm
        base = _unit(1 - (dxm / ew) ** 2) ** lid
        up, down = eh * open_ * base, eh * 0.85 * base
        sd_eye = np.maximum(np.where(dy < 0, -dy - up, dy - down), np.abs(dxm) - ew)
        outline = np.maximum(np.where(dy < 0, -dy - up - 0.024, dy - down - 0.01), np.abs(dxm) - ew - 0.015)
        paint(w, outline, _DARK, inw)
        paint(w, sd_eye, _SCLERA, inw)
        ir = min(0.5 * ew, 1.1 * eh)
        r = np.sqrt((uw - ex - n.gaze * 0.4 * ew) ** 2 + dy * dy)
        paint(w, np.maximum(r - ir, sd_eye), IRIS[p.iris], inw)
        paint(w, np.maximum(r - 0.45 * ir, sd_eye), _PUPIL, inw)
        bx = (uw - ex - side * 0.01) * side
        tb = vw - brow_y + tan_b * bx + p.brow_arch * (1 - np.minimum(np.abs(bx) / L, 1.0) ** 2)
        half = 0.5 * p.brow_thick * (1 - 0.45 * _unit((bx / L + 1) / 2))
        paint(w, np.maximum(np.abs(tb) - half, np.abs(bx) - L), BROW[p.brow_colour], inw)

    # Hair cap above the hairline (sideburns reach the eyes; long hair frames the face).
    if p.hair_style != BALD:
        qh = np.minimum(np.abs(u) / a, 1.0)
        side_y = FACE_CY + 0.5 * b if p.hair_style == LONG else p.eye_y - 0.02
        qh2 = qh * qh
        line = p.hairline + (side_y - p.hairline) * (qh2 * qh if p.hair_style == LONG else qh2 * qh2 * qh)
        if p.hair_style == FRINGE:
            fringe = p.eye_y - p.brow_gap - 0.06 + 0.015 * np.sin(70 * u)
            line = np.where(np.abs(u) < 0.85 * a, np.maximum(line, fringe), line)
        paint(_FULL, np.maximum(_ellipse(X, hy, 0.0, -0.03, 1.07 * a, 1.07 * b), v - line), hair_tex)

    # Occluders.
    occ = OCCLUDER[n.occ_colour]
    if n.occlusion == SUNGLASSES:
        lens = np.minimum(_ellipse(u, v, -p.eye_spacing, p.eye_y + 0.01, 1.5 * ew, 1.1 * ew),
                          _ellipse(u, v, p.eye_spacing, p.eye_y + 0.01, 1.5 * ew, 1.1 * ew))
        bridge = np.maximum(np.abs(u) - p.eye_spacing, np.abs(v - p.eye_y + 0.03) - 0.012)
        paint(_FULL, np.minimum(lens, bridge), OCCLUDER[0] * 0.5 + occ * 0.2, np.maximum(inside, 0.5))
    elif n.occlusion == MASK:  # covers the front (|phi| < 1.35) below the middle of the nose
        paint(_FULL, np.maximum(np.maximum(sd_head - 0.02, p.eye_y + 0.6 * p.nose_len - v),
                                (math.cos(1.35) - cphi) * a), occ)
    elif n.occlusion == HAND:  # a forearm / hand capsule in front of the lower face
        hx, hyy = 0.6 * n.occ_x, FACE_CY + 0.3 + 0.5 * n.occ_y
        ddx, ddy = 0.5 * math.sin(n.occ_angle), 0.5 * math.cos(n.occ_angle)
        tt = _unit(((X - hx) * ddx + (Y - hyy) * ddy) / (ddx ** 2 + ddy ** 2))
        paint(_FULL, np.sqrt((X - hx - tt * ddx) ** 2 + (Y - hyy - tt * ddy) ** 2) - 0.17,
              SKIN[n.occ_colour % len(SKIN)])

    # Lighting: Lambertian shading of an ellipsoid head, a gradient elsewhere.
    lx, lz = math.sin(n.light_azimuth), math.cos(n.light_azimuth)
    nx, ny = np.minimum(np.maximum(X / (1.05 * a), -1.0), 1.0), np.minimum(np.maximum(hy / (1.05 * b), -1.0), 1.0)
    nz = np.sqrt(np.maximum(1 - nx * nx - ny * ny, 0.0))
    lambert = np.maximum(lx * nx + 0.3 * lz * nz - 0.2 * ny, 0.0) + 0.3
    ls = n.light_strength
    bg = 1 + 0.25 * ls * lx * xi
    shade = bg + inside * (1 - ls + ls * lambert - bg)
    canvas *= shade * n.brightness
    if n.blur > 0.0:
        canvas = _blur(canvas, n.blur)
    canvas += (rng.random((s, s), dtype=np.float32) - 0.5) * (3.4641 * n.noise_std) + 0.5  # grey noise, std noise_std
    return np.ascontiguousarray(np.clip(canvas, 0, 255).astype(np.uint8).transpose(1, 2, 0))  # + 0.5: rounding
