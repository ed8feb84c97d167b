"""The four looks: day, dusk, night, rain. Each is a palette plus a light model; night adds
the ego's headlight pool, rain adds streaks, haze and wet glare."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sim.geometry import CAMERA_HEIGHT_M
from sim.render.canvas import Colour


@dataclass(frozen=True)
class Look:
    name: str
    sky_top: Colour  # BGR
    sky_horizon: Colour
    grass: Colour
    asphalt: Colour
    shoulder: Colour
    sidewalk: Colour
    paint_white: Colour
    paint_yellow: Colour
    ambient: float  # light factor on lit surfaces away from headlights
    headlights: float  # strength of the ego's headlight pool (0 = none)
    lights_on: bool  # other cars show tail and head lights
    glow: float  # how much lamps bloom
    per_pixel_light: bool  # whether painters must track light per pixel (headlights)


LOOKS = {
    "day": Look("day", (235, 190, 140), (245, 232, 215), (70, 140, 95), (96, 96, 98), (112, 112, 114),
                (175, 180, 182), (240, 240, 240), (40, 200, 235), 1.0, 0.0, False, 0.5, False),
    "dusk": Look("dusk", (120, 70, 80), (110, 160, 250), (55, 95, 70), (85, 82, 84), (95, 92, 94),
                 (140, 140, 145), (225, 225, 225), (40, 180, 220), 0.62, 0.45, True, 0.9, True),
    "night": Look("night", (30, 14, 8), (70, 45, 35), (35, 55, 40), (80, 80, 82), (90, 90, 92),
                  (120, 120, 125), (235, 235, 235), (40, 190, 230), 0.12, 1.25, True, 1.4, True),
    "rain": Look("rain", (165, 160, 155), (190, 188, 185), (70, 115, 85), (72, 72, 75), (85, 85, 88),
                 (150, 152, 155), (215, 215, 215), (40, 170, 205), 0.78, 0.15, True, 1.0, True),
}


_BACKGROUNDS: dict[tuple[str, int, int, int], np.ndarray] = {}


def background(look: Look, width: int, height: int, horizon: float) -> np.ndarray:
    """Sky gradient above the horizon, grass below (a fresh copy; cached per horizon row)."""
    key = (look.name, width, height, round(horizon))
    if key not in _BACKGROUNDS:
        if len(_BACKGROUNDS) > 256:
            _BACKGROUNDS.clear()
        _BACKGROUNDS[key] = _background(look, width, height, float(key[3]))
    return _BACKGROUNDS[key].copy()


def _background(look: Look, width: int, height: int, horizon: float) -> np.ndarray:
    rows = np.arange(height, dtype=np.float32)[:, None]
    f = np.clip(rows / max(horizon, 1.0), 0.0, 1.0)
    top = np.array(look.sky_top, np.float32)
    hor = np.array(look.sky_horizon, np.float32)
    sky = top * (1 - f) + hor * f
    # Grass darkens slightly towards the camera: depth cue without texture.
    g = np.clip((rows - horizon) / max(height - horizon, 1.0), 0.0, 1.0)
    grass = np.array(look.grass, np.float32) * (1.05 - 0.25 * g)
    column = np.where(rows < horizon, sky, grass)
    return np.repeat(column[:, None, :], width, axis=1).reshape(height, width, 3).clip(0, 255).astype(np.uint8)


def headlight(look: Look, forward: float, lateral: float) -> float:
    """Light factor at a point ``forward`` m ahead and ``lateral`` m to the side."""
    if look.headlights <= 0 or forward <= 0:
        return look.ambient
    spread = 1.5 + 0.22 * forward
    beam = math.exp(-((lateral / spread) ** 2)) * math.exp(-forward / 38.0)
    return min(1.25, look.ambient + look.headlights * beam)


def light_map(look: Look, width: int, height: int, horizon: float, focal: float) -> np.ndarray | None:
    """Per-pixel light on the ground (the headlight pool); the sky keeps its own colour."""
    if not look.per_pixel_light:
        return None
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    below = rows - horizon
    forward = np.where(below > 0.5, focal * CAMERA_HEIGHT_M / np.maximum(below, 0.5), 1e4)
    lateral = (cols - width / 2) * forward / focal
    spread = 1.5 + 0.22 * forward
    beam = np.exp(-((lateral / spread) ** 2)) * np.exp(-forward / 38.0)
    light = look.ambient + look.headlights * beam
    light = np.where(below > 0, np.minimum(light, 1.25), 1.0)  # sky is painted in its own colours
    return light.astype(np.float32)


def compose(look: Look, img: np.ndarray, light: np.ndarray | None, emissive: np.ndarray) -> np.ndarray:
    out = img.astype(np.float32)
    if light is not None:
        out *= light[:, :, None]
    elif look.ambient != 1.0:
        out *= look.ambient
    if emissive.any():
        h, w = emissive.shape[:2]
        small = cv2.resize(emissive, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
        sigma = max(1.0, w / 320.0)
        small = cv2.GaussianBlur(small, (0, 0), sigma)
        glow = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        out += emissive * 0.6 + glow * (3.0 * look.glow)
        if look.name == "rain":
            # Wet road: lamps smear downwards into long reflections.
            streak = cv2.blur(glow, (1, max(3, h // 12)))
            shifted = np.zeros_like(streak)
            shift = max(2, h // 30)
            shifted[shift:] = streak[:-shift]
            out += shifted * 0.8
    return np.clip(out, 0, 255).astype(np.uint8)


def rain(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Streaks, haze and a slight blur: rain reduces contrast and detail. All in uint8 OpenCV
    calls: this runs on every frame of every rain scene."""
    h, w = img.shape[:2]
    haze = cv2.GaussianBlur(img, (0, 0), max(0.6, w / 800.0))
    haze = cv2.addWeighted(haze, 0.82, haze, 0.0, 180.0 * 0.18)
    streaks = haze.copy()
    n = int(160 * w * h / (640 * 360))
    xs = rng.uniform(0, w, n)
    ys = rng.uniform(0, h, n)
    lengths = rng.uniform(0.02, 0.06, n) * h
    slant = 0.18
    for x, y, length in zip(xs, ys, lengths, strict=True):
        cv2.line(streaks, (int(x), int(y)), (int(x + slant * length), int(y + length)), (225, 225, 225), 1, cv2.LINE_AA)
    # Where there is no streak both images agree, so a global blend only touches the streaks.
    return cv2.addWeighted(haze, 0.55, streaks, 0.45, 0.0)
