"""Random camera views of a recording: the same drive as another camera, mount and windscreen would see it.

Two training recordings cannot show the model every camera, so each random view draws, once per video
(a camera does not change between frames), a mounting (zoom 1-2.2x at a random point near the
horizon, a slight roll, mirrored or not), a sensor and white balance (exposure, gamma, contrast,
saturation, per-channel gains, blur) and what sits in front of the lens (an A-pillar on either side,
up to a third of the frame wide; a hood or dashboard band), then adds fresh sensor noise to every
frame. Zooming in on a highway drive also brings the cars ahead close, which the recordings as filmed
rarely show; the labels stay those of the recording (ordinary driving), mirrored sides included
because ordinary driving has no lateral action.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class View:
    """One camera's parameters (fractions of the frame, so any resolution works)."""

    mirror: bool
    zoom: float
    centre: tuple[float, float]  # the point of the recording that lands in the output's centre
    roll_deg: float
    gain: float
    gamma: float
    contrast: float
    saturation: float
    channel_gains: tuple[float, float, float]
    blur_sigma: float
    noise: float
    pillar: tuple[str, float, float, int] | None  # side, top width, bottom width, grey level
    hood: tuple[float, float] | None  # top of the band (fraction of the height), brightness kept

    def apply(self, frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        h, w = frame.shape[:2]
        image = frame[:, ::-1] if self.mirror else frame
        # Geometry: rotate by the roll and scale by the zoom about the chosen point, which lands in the
        # output's centre; reflected borders instead of black ones (black edges would be a tell).
        cx, cy = self.centre[0] * w, self.centre[1] * h
        m = cv2.getRotationMatrix2D((cx, cy), self.roll_deg, self.zoom)
        m[0, 2] += w / 2 - cx
        m[1, 2] += h / 2 - cy
        image = cv2.warpAffine(np.ascontiguousarray(image), m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        x = image.astype(np.float32) / 255.0
        x = np.clip(x * np.float32(self.gain), 0.0, 1.0) ** np.float32(self.gamma)
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * np.float32(self.saturation)
        x = x.mean() + (x - x.mean()) * np.float32(self.contrast)
        x = x * np.asarray(self.channel_gains, np.float32)
        if self.blur_sigma > 0:
            x = cv2.GaussianBlur(x, (0, 0), self.blur_sigma * w / 640)
        out = np.clip(x * 255.0, 0, 255)
        # In front of the lens, so neither zoomed nor blurred.
        if self.hood is not None:
            top, keep = self.hood
            out[int(top * h):] *= keep
        if self.pillar is not None:
            side, top_w, bottom_w, level = self.pillar
            poly = np.array([[0, 0], [int(top_w * w), 0], [int(bottom_w * w), h], [0, h]], dtype=np.int32)
            if side == "right":
                poly[:, 0] = w - 1 - poly[:, 0]
            cv2.fillPoly(out, [poly], (float(level),) * 3)
        if self.noise > 0:
            out += rng.standard_normal(size=out.shape, dtype=np.float32) * np.float32(self.noise * 255.0)
        return np.clip(out, 0, 255).astype(np.uint8)


def draw_view(rng: np.random.Generator) -> View:
    """A camera at random (the ranges span dashcams, roof cameras and a phone held behind the glass)."""
    zoom = float(rng.uniform(1.0, 2.2))
    # The centre may wander only as far as the zoom leaves frame around it.
    room = 0.5 * (1.0 - 1.0 / zoom)
    centre = (0.5 + float(rng.uniform(-1.0, 1.0)) * room * 0.8, float(rng.uniform(0.45, 0.6)))
    pillar = None
    if rng.random() < 0.6:
        pillar = ("left" if rng.random() < 0.5 else "right", float(rng.uniform(0.06, 0.35)),
                  float(rng.uniform(0.0, 0.12)), int(rng.integers(8, 70)))
    hood = (float(1.0 - rng.uniform(0.08, 0.28)), float(rng.uniform(0.1, 0.5))) if rng.random() < 0.5 else None
    # The draw order is part of the contract: a (clip, look) seed names the same camera every time.
    mirror = bool(rng.random() < 0.5)
    roll_deg = float(rng.uniform(-4.0, 4.0))
    gain = float(math.exp(rng.uniform(math.log(0.55), math.log(1.35))))
    gamma = float(rng.uniform(0.75, 1.35))
    contrast = float(rng.uniform(0.65, 1.2))
    saturation = float(rng.uniform(0.4, 1.3))
    red, green, blue = rng.uniform(0.88, 1.12, size=3)
    return View(
        mirror=mirror,
        zoom=zoom,
        centre=centre,
        roll_deg=roll_deg,
        gain=gain,
        gamma=gamma,
        contrast=contrast,
        saturation=saturation,
        channel_gains=(float(red), float(green), float(blue)),
        blur_sigma=0.0 if rng.random() < 0.4 else float(rng.uniform(0.6, 2.5)),
        noise=float(rng.uniform(0.0, 0.035)),
        pillar=pillar,
        hood=hood,
    )


class RandomView:
    """A look whose camera is drawn once per video (`for_video`), not per frame."""

    def for_video(self, rng: np.random.Generator) -> Transform:
        return draw_view(rng).apply

    def __call__(self, frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # Used frame by frame, each frame would get another camera: refuse rather than flicker.
        raise TypeError("a random view is drawn per video: use RandomView.for_video(rng)")
