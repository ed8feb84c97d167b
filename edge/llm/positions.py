"""M-RoPE positions for Qwen3-VL's decoder, in the layout llama.cpp's IMROPE expects.

Qwen3-VL rotates every query/key by three position axes (temporal, height, width). llama.cpp
takes them for an *embedding* batch as 4 positions per token, section-major:
`[t_0..t_{n-1} | y_0..y_{n-1} | x_0..x_{n-1} | 0..0]`. A *text* batch passes one position per token
(llama.cpp broadcasts it to every axis), which is what transformers' `get_rope_index` does for text.

For the visual tokens of one chunk (one image, or one frame pair of a video) starting at `p0` on a
merged grid of `grid_h` rows by `grid_w` columns, token i (raster order) sits at
`t = p0, y = p0 + i // grid_w, x = p0 + i % grid_w`, and the text after the chunk continues at
`p0 + max(grid_h, grid_w)` (transformers: max position of the chunk + 1). Pure numpy, no llama.cpp.
"""

from __future__ import annotations

import numpy as np

# llama.cpp reserves a 4th section for IMROPE; Qwen3-VL leaves it at zero.
POSITIONS_PER_EMBEDDING = 4


def text_positions(start: int, count: int) -> np.ndarray:
    """One position per text token: start, start+1, ... (int32, as llama_pos)."""
    if start < 0 or count < 0:
        raise ValueError(f"text positions need start >= 0 and count >= 0 (got {start}, {count})")
    return np.arange(start, start + count, dtype=np.int32)


def visual_positions(p0: int, grid_h: int, grid_w: int) -> np.ndarray:
    """The (4, grid_h * grid_w) int32 M-RoPE positions of one visual chunk starting at `p0`.

    Row 0 is t, row 1 is y, row 2 is x, row 3 is zero; `.ravel()` gives llama.cpp's section-major array.
    """
    if p0 < 0 or grid_h <= 0 or grid_w <= 0:
        raise ValueError(f"visual chunk needs p0 >= 0 and a positive grid (got p0={p0}, {grid_h}x{grid_w})")
    index = np.arange(grid_h * grid_w, dtype=np.int32)
    pos = np.zeros((POSITIONS_PER_EMBEDDING, index.size), dtype=np.int32)
    pos[0] = p0
    pos[1] = p0 + index // grid_w
    pos[2] = p0 + index % grid_w
    return pos


def position_after_visual(p0: int, grid_h: int, grid_w: int) -> int:
    """Where text continues after a visual chunk at `p0`: p0 + max(grid_h, grid_w)."""
    return p0 + max(grid_h, grid_w)
