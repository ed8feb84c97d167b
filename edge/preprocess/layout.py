"""The encoder input's layouts and normalisation, as pure functions.

The float32 path is bit-identical to the transformers processor: the 256-entry table per channel
is computed with the processor's own arithmetic (float64 rescale cast to float32, then float32
(x - mean) / std); uint8 levels normalise to the same values (`normalize_levels`)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from edge.manifest import Normalization

# float32: normalised patch rows (the HF processor's pixel_values); uint8: the same rows as levels;
# frames: uint8 RGB planes [frames, 3, H, W] (the encoder patchifies and normalises).
PixelFormat = Literal["float32", "uint8", "frames"]
PIXEL_FORMATS = ("float32", "uint8", "frames")


def normalization_lut(normalization: Normalization) -> np.ndarray:
    """float32 [3, 256]: the normalised value of every uint8 level per RGB channel."""
    levels = np.arange(256, dtype=np.uint8)
    # Same operations, same dtypes, same order as transformers' rescale() and normalize().
    rescaled = (levels.astype(np.float64) * normalization.rescale_factor).astype(np.float32)
    mean = np.asarray(normalization.mean, dtype=np.float32)
    std = np.asarray(normalization.std, dtype=np.float32)
    return ((rescaled[None, :] - mean[:, None]) / std[:, None]).astype(np.float32)


def normalize_levels(levels: np.ndarray, normalization: Normalization) -> np.ndarray:
    """uint8 levels `[rows, 3 * temporal * p * p]` (the uint8 pixel format) -> the float32 pixel
    values the transformers processor gives for the same resized frames (columns are channel-major,
    so each third of a row is one channel)."""
    if levels.dtype != np.uint8 or levels.ndim != 2 or levels.shape[1] % 3:
        raise ValueError(f"expected uint8 [rows, 3 * k] levels, got {levels.dtype} {list(levels.shape)}")
    lut = normalization_lut(normalization)
    rows, width = levels.shape[0], levels.shape[1] // 3
    return lut[np.arange(3)[None, :, None], levels.reshape(rows, 3, width)].reshape(levels.shape)


def channel_scale_offset(normalization: Normalization) -> tuple[np.ndarray, np.ndarray]:
    """Per-RGB-channel float32 (scale, offset) with level * scale + offset = (level * rescale - mean)
    / std: what a graph that takes uint8 levels applies first. Within one float32 ulp of the
    processor's arithmetic."""
    rescale = np.float64(normalization.rescale_factor)
    mean = np.asarray(normalization.mean, dtype=np.float64)
    std = np.asarray(normalization.std, dtype=np.float64)
    return (rescale / std).astype(np.float32), (-mean / std).astype(np.float32)


def levels_scale_offset(normalization: Normalization, patch_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """`channel_scale_offset` per patch column (columns are channel-major: each third of a patch
    row is one channel)."""
    scale, offset = channel_scale_offset(normalization)
    return np.repeat(scale, patch_dim // 3), np.repeat(offset, patch_dim // 3)


def patch_layout(frames: np.ndarray, patch: int = 16, temporal: int = 2, merge: int = 2) -> np.ndarray:
    """Frames `(T, 3, H, W)` of any dtype -> the processor's patch rows `(grid_t * grid_h * grid_w,
    3 * temporal * patch * patch)`, same dtype (the last frame repeated to fill a partial temporal
    patch). What a frames-layout encoder does inside its graph, in numpy."""
    t, c, h, w = frames.shape
    if t % temporal:
        frames = np.concatenate([frames, np.repeat(frames[-1:], temporal - t % temporal, axis=0)])
        t = frames.shape[0]
    gt, gh, gw = t // temporal, h // patch, w // patch
    x = frames.reshape(gt, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return np.ascontiguousarray(x.reshape(gt * gh * gw, c * temporal * patch * patch))
