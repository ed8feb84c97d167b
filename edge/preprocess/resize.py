"""Resizing a camera frame to the profile: centre-crop or letterbox, INTER_AREA-like downscaling."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

ResizeMode = Literal["crop", "letterbox"]
ResizeFilter = Literal["area", "fast"]


def check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"a frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"a frame must be uint8 [H, W, 3], got {frame.dtype} {list(frame.shape)}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"a frame must not be empty, got shape {list(frame.shape)}")


def resize(src: np.ndarray, dst: np.ndarray, resize_filter: ResizeFilter) -> None:
    """Resize `src` to `dst`'s size into `dst`."""
    h, w = dst.shape[:2]
    sh, sw = src.shape[:2]
    if sh <= h and sw <= w:
        resize_to(src, dst, cv2.INTER_CUBIC)  # upscaling: INTER_AREA would be plain bilinear
        return
    if resize_filter == "area":
        resize_to(src, dst, cv2.INTER_AREA)
        return
    # "fast": OpenCV's INTER_AREA runs a SIMD 2x2 box average for an exact factor of 2 but a slow
    # generic path for fractional factors (~10x slower on an HD frame). So: halve with the box
    # while the frame is >= 4x the target, a bilinear step (factor < 2: little aliasing) to
    # exactly twice the target, then one last 2x box average.
    while sh >= 4 * h and sw >= 4 * w:
        sh, sw = sh // 2, sw // 2
        src = cv2.resize(src[: 2 * sh, : 2 * sw], (sw, sh), interpolation=cv2.INTER_AREA)
    twice = cv2.resize(src, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    resize_to(twice, dst, cv2.INTER_AREA)


def resize_to(src: np.ndarray, dst: np.ndarray, interpolation: int) -> None:
    h, w = dst.shape[:2]
    result = cv2.resize(src, (w, h), dst=dst, interpolation=interpolation)
    # OpenCV writes in place when it can; a strided destination may get a fresh array instead.
    if not np.shares_memory(result, dst):
        np.copyto(dst, result)
