"""A frame being painted: the colour image, a per-pixel light factor and an emissive layer.

Lighting works like a tiny deferred renderer: painters write albedo colours and, where the
variant needs it (dusk, night), how much light reaches that surface. Lamps write into the
emissive layer, which is added after the light factor and blurred into a glow, so a red light
stays bright red at night while the street around it goes dark.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

SUBPIXEL_BITS = 4
SUBPIXEL = 1 << SUBPIXEL_BITS

Colour = tuple[int, int, int]


def scale(colour: Colour, factor: float) -> Colour:
    return tuple(int(min(255, max(0, c * factor))) for c in colour)  # type: ignore[return-value]


class Canvas:
    def __init__(self, background: np.ndarray, light: np.ndarray | None) -> None:
        self.img = background
        self.height, self.width = background.shape[:2]
        self.light = light  # None: uniform light, nothing to track per pixel
        self.emissive = np.zeros_like(background, dtype=np.float32)

    @staticmethod
    def _fixed(points: np.ndarray | list) -> np.ndarray:
        return np.round(np.asarray(points, dtype=np.float64) * SUBPIXEL).astype(np.int32).reshape(-1, 1, 2)

    def visible(self, points: np.ndarray | list) -> bool:
        """Cheap reject of polygons entirely off screen (and of absurd coordinates that would
        overflow OpenCV's fixed-point rasteriser)."""
        us = [p[0] for p in points]
        vs = [p[1] for p in points]
        lo_u, hi_u, lo_v, hi_v = min(us), max(us), min(vs), max(vs)
        if not all(math.isfinite(v) and abs(v) < 1e6 for v in (lo_u, hi_u, lo_v, hi_v)):
            return False
        return not (hi_u < -2 or hi_v < -2 or lo_u > self.width + 2 or lo_v > self.height + 2)

    def poly(self, points: np.ndarray | list | None, colour: Colour, light: float | None = None) -> None:
        if points is None or len(points) < 3 or not self.visible(points):
            return
        fixed = self._fixed(points)
        cv2.fillPoly(self.img, [fixed], colour, lineType=cv2.LINE_AA, shift=SUBPIXEL_BITS)
        if self.light is not None and light is not None:
            cv2.fillPoly(self.light, [fixed], float(light), shift=SUBPIXEL_BITS)

    def line(self, a: tuple[float, float], b: tuple[float, float], colour: Colour, thickness: float,
             light: float | None = None) -> None:
        t = max(1, round(thickness))
        pa = (round(a[0] * SUBPIXEL), round(a[1] * SUBPIXEL))
        pb = (round(b[0] * SUBPIXEL), round(b[1] * SUBPIXEL))
        if max(abs(v) for v in (*pa, *pb)) > 1 << 26:
            return
        cv2.line(self.img, pa, pb, colour, t, cv2.LINE_AA, SUBPIXEL_BITS)
        if self.light is not None and light is not None:
            cv2.line(self.light, pa, pb, float(light), t, cv2.LINE_8, SUBPIXEL_BITS)

    def disc(self, centre: tuple[float, float], radius: float, colour: Colour, light: float | None = None) -> None:
        if not (-radius - 2 < centre[0] < self.width + radius + 2 and -radius - 2 < centre[1] < self.height + radius + 2):
            return
        c = (round(centre[0] * SUBPIXEL), round(centre[1] * SUBPIXEL))
        r = max(1, round(radius * SUBPIXEL))
        cv2.circle(self.img, c, r, colour, -1, cv2.LINE_AA, SUBPIXEL_BITS)
        if self.light is not None and light is not None:
            cv2.circle(self.light, c, r, float(light), -1, cv2.LINE_8, SUBPIXEL_BITS)

    def lamp(self, centre: tuple[float, float], radius: float, colour: Colour, intensity: float) -> None:
        """An emitting lamp: drawn solid in the albedo (so daylight shows it) and added to the
        emissive layer (so darkness cannot hide it). A minimum size keeps a far lamp a dot."""
        radius = max(radius, 1.0)
        self.disc(centre, radius, colour, light=1.0)
        if not (-3 * radius < centre[0] < self.width + 3 * radius and -3 * radius < centre[1] < self.height + 3 * radius):
            return
        c = (round(centre[0] * SUBPIXEL), round(centre[1] * SUBPIXEL))
        value = tuple(float(v) * intensity for v in colour)
        cv2.circle(self.emissive, c, max(1, round(radius * SUBPIXEL)), value, -1, cv2.LINE_AA, SUBPIXEL_BITS)

    def glow_poly(self, points: np.ndarray | list | None, colour: Colour, intensity: float) -> None:
        """An emitting area (arrow board, light bar): solid in the albedo and in the emissive layer."""
        if points is None or len(points) < 3 or not self.visible(points):
            return
        self.poly(points, colour, light=1.0)
        value = tuple(float(v) * intensity for v in colour)
        cv2.fillPoly(self.emissive, [self._fixed(points)], value,
                     lineType=cv2.LINE_AA, shift=SUBPIXEL_BITS)
