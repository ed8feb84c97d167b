"""llama.cpp's own vision encoder (libmtmd, an mmproj GGUF) on the bundle's frames, for comparison.

The bundle's encoder is ONNX Runtime; llama.cpp can encode Qwen3-VL frames itself with its `mtmd`
library. This runs that path through llama-cpp-python's ctypes bindings (`llama_cpp.mtmd_cpp`, the
libmtmd.so its wheel ships) and returns the rows in the runtime's layout, so the two can be compared
on the same pixels:

- frames go in as uint8 RGB (the bundle's "frames" input, [T, 3, H, W]); each is one mtmd bitmap,
  marked mergeable so mtmd pairs consecutive frames into one temporal patch as Qwen3-VL does;
- mtmd preprocesses (normalises; a frame whose sides are multiples of 32 is not resized) and
  `mtmd_encode_chunk` runs clip.cpp's qwen3vl graph once per frame pair;
- `mtmd_get_output_embd` gives n_tokens x (n_embd * (1 + n_deepstack)) floats per pair: merger output,
  then the DeepStack slices, the layout the bundle's encoder writes.

mtmd needs the text model's vocabulary (it wraps each image in <|vision_start|> ... <|vision_end|>
text chunks), so a decoder GGUF of the same model is loaded with `vocab_only` (no weights). A
vocabulary-only model reports no input width, so mtmd cannot check it against the projector: the
row width is read from the mmproj's own keys (projection_dim x (1 + DeepStack layers)) and checked
against the width the caller expects (the bundle's n_embd_inp).
"""

from __future__ import annotations

import ctypes
import logging
import time
from pathlib import Path

import numpy as np

from edge.vision.base import VisionBackendError

log = logging.getLogger(__name__)


def _silence_mtmd(verbose: bool):
    """Route mtmd's log (stderr by default) to nothing unless verbose; returns the callback to keep alive."""
    import llama_cpp
    from llama_cpp import mtmd_cpp

    @llama_cpp.llama_log_callback
    def _drop(level, text, user_data):
        if verbose:
            log.debug("mtmd: %s", text.decode("utf-8", errors="replace").rstrip())

    mtmd_cpp.mtmd_log_set(_drop, None)
    mtmd_cpp.mtmd_helper_log_set(_drop, None)
    return _drop


def mmproj_row_width(mmproj: Path) -> int:
    """projection_dim x (1 + DeepStack layers) from the mmproj's keys: the width of each output row."""
    from gguf import GGUFReader

    fields = GGUFReader(mmproj).fields
    try:
        width = int(fields["clip.vision.projection_dim"].contents())
    except KeyError:
        raise VisionBackendError(f"{mmproj}: no clip.vision.projection_dim key (not an mmproj GGUF)") from None
    deepstack = fields.get("clip.vision.is_deepstack_layers")
    return width * (1 + (sum(bool(x) for x in deepstack.contents()) if deepstack else 0))


class MtmdEncoder:
    """One mmproj GGUF in libmtmd (CPU). `encode(frames)` -> rows [tokens, n_embd_out]."""

    name = "llama.cpp mtmd (CPU)"

    def __init__(self, mmproj: Path | str, text_gguf: Path | str, threads: int = 0,
                 expected_width: int | None = None, verbose: bool = False):
        import llama_cpp
        from llama_cpp import mtmd_cpp

        from edge.llm.model import ensure_backend

        self._ctx = self._model = None
        self.mmproj, self.text_gguf = Path(mmproj), Path(text_gguf)
        for path in (self.mmproj, self.text_gguf):
            if not path.is_file():
                raise VisionBackendError(f"llama.cpp vision: {path} does not exist")
        self.n_embd_out = mmproj_row_width(self.mmproj)
        if expected_width is not None and expected_width != self.n_embd_out:
            raise VisionBackendError(f"{self.mmproj.name} writes rows {self.n_embd_out} wide, the decoder takes "
                                     f"{expected_width}: not the same model")
        ensure_backend(verbose)
        self._mtmd = mtmd_cpp
        self._log_callback = _silence_mtmd(verbose)
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self._model = llama_cpp.llama_model_load_from_file(str(self.text_gguf).encode(), params)
        if not self._model:
            raise VisionBackendError(f"llama.cpp could not load the vocabulary of {self.text_gguf}")
        self._free_model = llama_cpp.llama_model_free
        cparams = mtmd_cpp.mtmd_context_params_default()
        cparams.use_gpu = False
        cparams.print_timings = False
        cparams.warmup = False
        if threads:
            cparams.n_threads = threads
        self.threads = cparams.n_threads
        self._ctx = mtmd_cpp.mtmd_init_from_file(str(self.mmproj).encode(), self._model, cparams)
        if not self._ctx:
            self.close()
            raise VisionBackendError(
                f"llama.cpp (mtmd) refused {self.mmproj.name} with {self.text_gguf.name} "
                "(not an mmproj GGUF, or its projection width differs from the decoder's input width)")
        self.last_timing: dict[str, float] = {}

    def _bitmaps(self, frames: np.ndarray) -> list:
        """uint8 [T, 3, H, W] -> T mergeable mtmd bitmaps (RGB interleaved, as mtmd takes them)."""
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
            raise VisionBackendError(f"llama.cpp vision takes uint8 frames [T, 3, H, W], got {frames.dtype} {frames.shape}")
        if frames.shape[0] % 2:
            raise VisionBackendError(f"llama.cpp vision pairs frames: got an odd count ({frames.shape[0]})")
        bitmaps = []
        height, width = frames.shape[2:]
        for frame in frames:
            rgb = np.ascontiguousarray(frame.transpose(1, 2, 0))
            data = rgb.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
            bitmap = self._mtmd.mtmd_bitmap_init(width, height, data)  # copies the pixels
            if not bitmap:
                raise VisionBackendError("mtmd_bitmap_init failed")
            self._mtmd.mtmd_bitmap_set_mergeable(bitmap, True)
            bitmaps.append(bitmap)
        return bitmaps

    def _tokenize(self, bitmaps: list):
        m = self._mtmd
        parts = [m.mtmd_input_part(text=None, bitmap=b) for b in bitmaps]
        array = (ctypes.POINTER(m.mtmd_input_part) * len(parts))(*[ctypes.pointer(p) for p in parts])
        chunks = m.mtmd_input_chunks_init()
        status = m.mtmd_tokenize_from_parts(self._ctx, chunks, array, len(parts), False)
        if status != 0:
            m.mtmd_input_chunks_free(chunks)
            raise VisionBackendError(f"mtmd_tokenize_from_parts failed with status {status}")
        return chunks

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """Frames -> rows, one mtmd image chunk per frame pair, concatenated in frame order.
        `last_timing` keeps the split: preprocess (tokenize: normalise, patch) and encode (graph)."""
        m = self._mtmd
        start = time.perf_counter()
        bitmaps = self._bitmaps(frames)
        try:
            chunks = self._tokenize(bitmaps)
        finally:
            for b in bitmaps:
                m.mtmd_bitmap_free(b)
        prepared = time.perf_counter()
        rows = []
        try:
            for i in range(m.mtmd_input_chunks_size(chunks)):
                chunk = m.mtmd_input_chunks_get(chunks, i)
                if m.mtmd_input_chunk_get_type(chunk) != m.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    continue  # <|vision_start|> / <|vision_end|> text
                n_tokens = m.mtmd_input_chunk_get_n_tokens(chunk)
                status = m.mtmd_encode_chunk(self._ctx, chunk)
                if status != 0:
                    raise VisionBackendError(f"mtmd_encode_chunk failed with status {status}")
                out = m.mtmd_get_output_embd(self._ctx)
                rows.append(np.ctypeslib.as_array(out, shape=(n_tokens, self.n_embd_out)).copy())
        finally:
            m.mtmd_input_chunks_free(chunks)
        done = time.perf_counter()
        self.last_timing = {"preprocess_ms": (prepared - start) * 1e3, "encode_ms": (done - prepared) * 1e3}
        if len(rows) != frames.shape[0] // 2:
            raise VisionBackendError(f"mtmd made {len(rows)} image chunks from {frames.shape[0]} frames "
                                     f"(expected one per frame pair)")
        return np.concatenate(rows)

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            self._mtmd.mtmd_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            self._free_model(self._model)
            self._model = None

    def __del__(self) -> None:
        self.close()
