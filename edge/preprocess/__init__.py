"""Camera frames -> the vision encoder's input, without the transformers processor: resize to the
profile (resize.py), lay out and normalise (layout.py: bit-identical to the processor), with the
frames prepared in the capture thread ahead of the loop (pipeline.py)."""

from edge.preprocess.layout import (
    PIXEL_FORMATS,
    PixelFormat,
    channel_scale_offset,
    levels_scale_offset,
    normalization_lut,
    normalize_levels,
    patch_layout,
)
from edge.preprocess.pipeline import ColorOrder, Preprocessor
from edge.preprocess.resize import ResizeFilter, ResizeMode

__all__ = [
    "PIXEL_FORMATS",
    "ColorOrder",
    "PixelFormat",
    "Preprocessor",
    "ResizeFilter",
    "ResizeMode",
    "channel_scale_offset",
    "levels_scale_offset",
    "normalization_lut",
    "normalize_levels",
    "patch_layout",
]
