"""The prepared-frame pipeline: camera frames -> the encoder's input for the bundle's fixed profile.

Consecutive clips share all but one frame, so frames are resized once (cached by frame object), and
the capture thread prepares each sampled frame, and the clip it completes, while the loop decodes
the previous one (`prepare_frame`); a cycle then only takes or assembles that clip. Buffers are
allocated once and the returned array is reused by the next call.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Literal, cast

import cv2
import numpy as np

from edge.manifest import CameraProfile, Normalization, vision_input_shape
from edge.preprocess.layout import PIXEL_FORMATS, PixelFormat, normalization_lut
from edge.preprocess.resize import ResizeFilter, ResizeMode, check_frame, resize

ColorOrder = Literal["bgr", "rgb"]


def _check_options(resize_mode: str, resize_filter: str, input_order: str, pixel_format: str) -> None:
    if resize_mode not in ("crop", "letterbox"):
        raise ValueError(f"resize_mode must be 'crop' or 'letterbox', got {resize_mode!r}")
    if resize_filter not in ("area", "fast"):
        raise ValueError(f"resize_filter must be 'area' or 'fast', got {resize_filter!r}")
    if input_order not in ("bgr", "rgb"):
        raise ValueError(f"input_order must be 'bgr' or 'rgb', got {input_order!r}")
    if pixel_format not in PIXEL_FORMATS:
        raise ValueError(f"pixel_format must be one of {', '.join(PIXEL_FORMATS)}, got {pixel_format!r}")


class Preprocessor:
    """Fixed-profile preprocessing: frames (uint8 HxWx3) -> the encoder input in `pixel_format`.

    resize_mode: "crop" (centre-crop to the profile's aspect, then resize) or "letterbox" (fit
      inside, bars in `pad_value`, by default the uint8 colour nearest the normalisation mean,
      which normalises to ~0, the most neutral input).
    resize_filter: "fast" (default: bilinear to twice the target size, then INTER_AREA by exactly
      2, which OpenCV runs as a SIMD box average; ~10x cheaper than a fractional INTER_AREA pass)
      or "area" (one fractional cv2.INTER_AREA pass: a little closer to the processor's PIL
      bicubic). On drive frames both stay within ~1 grey level RMS of PIL (fast 1.0, area 0.86).
    cache_frames: how many resized frames to keep (keyed by the frame array object, which
      capture never rewrites); 0 disables.
    pixel_format: what the clip path returns: "float32" (normalised, the processor's pixel_values),
      "uint8" (the levels in the same layout, for encoders that normalise in their graph) or
      "frames" (uint8 RGB planes `[frames, 3, H, W]`, for encoders that also patchify).
    """

    def __init__(
        self,
        profile: CameraProfile,
        normalization: Normalization,
        resize_mode: ResizeMode = "crop",
        input_order: ColorOrder = "bgr",
        pad_value: tuple[int, int, int] | None = None,
        resize_filter: ResizeFilter = "fast",
        cache_frames: int | None = None,
        pixel_format: PixelFormat = "float32",
    ) -> None:
        _check_options(resize_mode, resize_filter, input_order, pixel_format)
        self.pixel_format = pixel_format
        self.profile = profile
        self.normalization = normalization
        self.resize_mode = resize_mode
        self.resize_filter = resize_filter
        self.input_order = input_order
        self._init_levels(pad_value)
        self._init_patch_buffers()
        self._init_resize_cache(cache_frames)
        self._init_prepared()

    def _init_levels(self, pad_value: tuple[int, int, int] | None) -> None:
        """The letterbox bars' colour and the normalisation tables."""
        normalization = self.normalization
        if pad_value is None:
            r, g, b = (round(m / normalization.rescale_factor) for m in normalization.mean)
            pad_value = (b, g, r) if self.input_order == "bgr" else (r, g, b)
        self.pad_value = tuple(int(v) for v in pad_value)
        lut = normalization_lut(normalization)
        # cv2.LUT wants a [256, 1] table per call; one call covers all channels when they agree
        # (Qwen3-VL normalises every channel with 0.5/0.5).
        self._luts = [np.ascontiguousarray(lut[c].reshape(256, 1)) for c in range(3)]
        self._shared_lut = bool(np.array_equal(lut[0], lut[1]) and np.array_equal(lut[0], lut[2]))

    def _init_patch_buffers(self) -> None:
        """The patch cut's views and output buffers."""
        profile = self.profile
        p, m, t = profile.patch_size, profile.merge_size, profile.temporal_patch_size
        self._frame_view = (profile.grid_h // m, m, p, profile.grid_w // m, m, p, 3)
        self._patch_shape = (profile.grid_h // m, profile.grid_w // m, m, m, 3, t, p, p)
        self._buffers: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._planes_buffers: dict[int, np.ndarray] = {}  # frame count -> frames-format output
        if self.pixel_format != "frames":  # the patch paths' buffers, ready before the first clip
            self._buffers_for(profile.frames_per_clip)
            self._buffers_for(t)

    def _init_resize_cache(self, cache_frames: int | None) -> None:
        """Resized-frame cache: a fixed pool of slots, LRU over frame objects."""
        profile = self.profile
        slots = profile.frames_per_clip + 2 if cache_frames is None else max(0, cache_frames)
        self._pool = np.empty((max(slots, 1), profile.height, profile.width, 3), dtype=np.uint8)
        self._cache: OrderedDict[int, tuple[np.ndarray, int]] = OrderedDict()  # id(frame) -> (frame, slot)
        self._cache_slots = slots
        self._free_slots = list(range(slots))
        self._scratch = np.empty((profile.height, profile.width, 3), dtype=np.uint8)
        self.resizes = 0  # frames actually resized (cache misses), for tests and telemetry

    def _init_prepared(self) -> None:
        """Prepared-frame cache (pipelining): frame id -> (image, float32 block). Written by the
        capture thread, read by the loop thread, so every access holds `_prepared_lock`."""
        profile = self.profile
        p, m = profile.patch_size, profile.merge_size
        self._block_shape = (
            (3, profile.height, profile.width) if self.pixel_format == "frames"
            else (profile.grid_h // m, profile.grid_w // m, m, m, 3, p, p)
        )
        self._prepared: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._preparing: dict[int, threading.Event] = {}  # ids some thread is preparing right now
        self._prepared_lock = threading.Lock()
        self._prepared_slots = profile.frames_per_clip + 2
        self._thread_scratch = threading.local()  # per-thread uint8 buffers for prepare
        self.prepared_hits = 0  # clip frames taken ready from the cache (telemetry, tests)
        # Clip outputs for the frame-id path: [busy by a writer | ready (speculative) | held by
        # the loop until its next call]; all bookkeeping under `_prepared_lock`.
        self._clip_outs: list[np.ndarray] = [np.empty(self._clip_shape, dtype=self._clip_dtype) for _ in range(3)]
        self._outs_busy: set[int] = set()
        self._out_held: int | None = None
        self._ready: tuple[tuple[int, ...], tuple[np.ndarray, ...], int] | None = None  # ids, images, out
        self._recent: deque[tuple[int, np.ndarray]] = deque(maxlen=profile.frames_per_clip)
        self.ready_clips = 0  # clips handed out as assembled ahead by prepare_frame (tests)

    # ---- geometry --------------------------------------------------------------------------
    @property
    def _clip_shape(self) -> tuple[int, ...]:
        """The encoder input shape of the pixel format (the manifest's, for its input layout)."""
        return tuple(vision_input_shape(self.profile, "frames" if self.pixel_format == "frames" else "patches"))

    @property
    def _clip_dtype(self) -> type:
        return np.float32 if self.pixel_format == "float32" else np.uint8

    @property
    def grid_thw(self) -> tuple[int, int, int]:
        return (self.profile.frame_pairs, self.profile.grid_h, self.profile.grid_w)

    def _buffers_for(self, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """(patch-ordered uint8, output float32) for N frames."""
        buffers = self._buffers.get(n_frames)
        if buffers is None:
            prof = self.profile
            grid_t = n_frames // prof.temporal_patch_size
            ordered = np.empty((grid_t, *self._patch_shape), dtype=np.uint8)
            out = np.empty((grid_t * prof.grid_h * prof.grid_w, prof.patch_dim), dtype=np.float32)
            buffers = (ordered, out)
            self._buffers[n_frames] = buffers
        return buffers

    def resize_into(self, frame: np.ndarray, dst: np.ndarray) -> None:
        """Resize one frame to the profile into `dst` (uint8 [H, W, 3]), keeping channel order."""
        check_frame(frame)
        height, width = self.profile.height, self.profile.width
        fh, fw = frame.shape[:2]
        if (fh, fw) == (height, width):
            np.copyto(dst, frame)
            return
        if self.resize_mode == "crop":
            # The largest centred window with the profile's aspect: no distortion, no bars.
            if fw * height > width * fh:
                cw = max(1, round(fh * width / height))
                x0 = (fw - cw) // 2
                src = frame[:, x0 : x0 + cw]
            else:
                ch = max(1, round(fw * height / width))
                y0 = (fh - ch) // 2
                src = frame[y0 : y0 + ch]
            resize(src, dst, self.resize_filter)
            return
        scale = min(width / fw, height / fh)
        nw = min(width, max(1, round(fw * scale)))
        nh = min(height, max(1, round(fh * scale)))
        x0, y0 = (width - nw) // 2, (height - nh) // 2
        dst[...] = self.pad_value
        resize(frame, dst[y0 : y0 + nh, x0 : x0 + nw], self.resize_filter)

    def resized(self, frame: np.ndarray) -> np.ndarray:
        """The frame resized to the profile (uint8 [H, W, 3]); cached per frame object. The
        array is owned by the preprocessor and valid until the frame leaves the cache."""
        key = id(frame)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is frame:
            self._cache.move_to_end(key)
            return self._pool[hit[1]]
        if self._cache_slots == 0:
            self.resize_into(frame, self._scratch)
            self.resizes += 1
            return self._scratch
        if hit is not None:  # an id reused by a new object: the old entry is stale
            self._free_slots.append(self._cache.pop(key)[1])
        if not self._free_slots:
            _, (_, slot) = self._cache.popitem(last=False)
            self._free_slots.append(slot)
        slot = self._free_slots.pop()
        self.resize_into(frame, self._pool[slot])
        self.resizes += 1
        # Holding `frame` keeps its id from being reused while the entry lives.
        self._cache[key] = (frame, slot)
        return self._pool[slot]

    # ---- the pipeline ----------------------------------------------------------------------
    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        return self.preprocess_clip(frames)

    def preprocess_clip(
        self, frames: Sequence[np.ndarray], frame_ids: Sequence[int] | None = None
    ) -> np.ndarray:
        """A clip of `frames_per_clip` frames -> `[patches_per_clip, patch_dim]` in the pixel
        format (video layout: consecutive frames form the temporal pairs). Reused by the next call.

        With `frame_ids` (camera frame ids, one per frame), frames already given to
        `prepare_frame` are taken ready; the others are prepared here (and kept for the next
        clip), then the clip is assembled. Same output, bit for bit."""
        n = len(frames)
        if n != self.profile.frames_per_clip:
            raise ValueError(
                f"clip has {n} frames; the camera profile expects frames_per_clip="
                f"{self.profile.frames_per_clip}"
            )
        if frame_ids is not None:
            if len(frame_ids) != n:
                raise ValueError(f"clip has {n} frames but {len(frame_ids)} frame ids")
            return self._clip_from_prepared(tuple(int(i) for i in frame_ids), tuple(frames))
        if self._cache_slots < n:  # no room to hold the whole clip: resize into a private stack
            stack = np.empty((n, self.profile.height, self.profile.width, 3), dtype=np.uint8)
            for i, frame in enumerate(frames):
                self.resize_into(frame, stack[i])
                self.resizes += 1
            return self.patchify(stack)
        return self.patchify([self.resized(frame) for frame in frames])

    # ---- pipelining: frames prepared as they are sampled ------------------------------------
    def prepare_frame(self, frame_id: int, image: np.ndarray) -> None:
        """Resize one frame and bring it into the pixel format (its patch-ordered block, or its RGB
        planes), cached under `frame_id` for the next `preprocess_clip(..., frame_ids)`.
        Thread-safe; meant for the capture thread, right when the sampler takes the frame. A frame
        already prepared (or being prepared by another thread) is not prepared twice."""
        with self._prepared_lock:
            if self._lookup_prepared(frame_id, image) is not None or frame_id in self._preparing:
                return
            done = self._preparing[frame_id] = threading.Event()
        try:
            block = self._compute_block(image)
            with self._prepared_lock:
                self._store_prepared(frame_id, image, block)
                self._recent.append((frame_id, image))
            self._assemble_ahead()
        finally:
            with self._prepared_lock:
                self._preparing.pop(frame_id, None)
            done.set()

    def _assemble_ahead(self) -> None:
        """Assemble the clip of the last `frames_per_clip` prepared frames into a free output,
        then publish it as ready (replacing the previous ready one)."""
        with self._prepared_lock:
            recent = tuple(self._recent)
            if len(recent) < self.profile.frames_per_clip:
                return
            blocks = [self._lookup_prepared(i, image) for i, image in recent]
            target = self._claim_out()
            if target is None or any(b is None for b in blocks):
                if target is not None:
                    self._outs_busy.discard(target)
                return
        try:
            self._assemble_into(cast(list[np.ndarray], blocks), self._clip_outs[target])  # none is None: checked
            with self._prepared_lock:
                self._ready = (tuple(i for i, _ in recent), tuple(image for _, image in recent), target)
        finally:
            with self._prepared_lock:
                self._outs_busy.discard(target)

    def _claim_out(self) -> int | None:
        """Caller holds the lock: an output nobody writes, holds or has ready; marked busy."""
        ready = None if self._ready is None else self._ready[2]
        for index in range(len(self._clip_outs)):
            if index not in self._outs_busy and index != self._out_held and index != ready:
                self._outs_busy.add(index)
                return index
        return None

    def _clip_from_prepared(self, ids: tuple[int, ...], frames: tuple[np.ndarray, ...]) -> np.ndarray:
        """The loop's side: the clip ready-made when the capture thread assembled exactly this
        one, else assembled here from prepared (or now prepared) frames."""
        with self._prepared_lock:
            self._out_held = None  # the loop is done with the previous clip's array
            in_flight = [self._preparing[i] for i in ids if i in self._preparing]
        for event in in_flight:  # the capture thread is on it: finishing beats doing it twice
            event.wait(timeout=1.0)
        with self._prepared_lock:
            ready = self._ready
            if ready is not None and ready[0] == ids and all(a is b for a, b in zip(ready[1], frames, strict=True)):
                self._ready = None
                self._out_held = ready[2]
                self.prepared_hits += len(ids)
                self.ready_clips += 1
                return self._clip_outs[ready[2]]
        blocks = [self._prepared_block(i, frame) for i, frame in zip(ids, frames, strict=True)]
        with self._prepared_lock:
            target = self._claim_out()
            if target is not None:
                self._outs_busy.discard(target)
                self._out_held = target  # ours from here: the capture thread skips a held output
        # With one capture thread (one busy output at most) and one ready, one output is always
        # free; several preparing threads could take them all: then a one-off array.
        out = self._clip_outs[target] if target is not None else np.empty_like(self._clip_outs[0])
        self._assemble_into(blocks, out)
        return out

    def _prepared_block(self, frame_id: int, image: np.ndarray) -> np.ndarray:
        """The frame's block: from the cache, after another thread's preparation in flight, or
        computed here (and cached)."""
        mine = None
        with self._prepared_lock:
            block = self._lookup_prepared(frame_id, image)
            in_flight = self._preparing.get(frame_id)
            if block is None and in_flight is None:
                # Claimed, so a capture thread reaching this frame now skips it rather than redo it.
                mine = self._preparing[frame_id] = threading.Event()
        if block is None and in_flight is not None:
            # The capture thread is on it right now: finishing its work beats doing it twice.
            in_flight.wait(timeout=1.0)
            with self._prepared_lock:
                block = self._lookup_prepared(frame_id, image)
        if block is not None:
            self.prepared_hits += 1
            return block
        try:
            block = self._compute_block(image)
            with self._prepared_lock:
                self._store_prepared(frame_id, image, block)
        finally:
            if mine is not None:
                with self._prepared_lock:
                    self._preparing.pop(frame_id, None)
                mine.set()
        return block

    def _lookup_prepared(self, frame_id: int, image: np.ndarray) -> np.ndarray | None:
        """Caller holds the lock. Hit only for the very same image object: ids restart when a
        preprocessor outlives a feed (tests, benches), and a stale block must never be used."""
        entry = self._prepared.get(frame_id)
        if entry is None or entry[0] is not image:
            return None
        self._prepared.move_to_end(frame_id)
        return entry[1]

    def _store_prepared(self, frame_id: int, image: np.ndarray, block: np.ndarray) -> None:
        """Caller holds the lock. Blocks are never rewritten (a new array per frame), so a
        reader still holding an evicted block keeps valid data."""
        self._prepared[frame_id] = (image, block)
        self._prepared.move_to_end(frame_id)
        while len(self._prepared) > self._prepared_slots:
            self._prepared.popitem(last=False)

    def _compute_block(self, image: np.ndarray) -> np.ndarray:
        """One frame -> its share of the clip: RGB planes `(3, H, W)` for the frames format, else
        `(grid_h/m, grid_w/m, m, m, 3, p, p)` (the clip layout with the temporal axis removed).
        Uses per-thread scratch, so it runs in any thread."""
        prof = self.profile
        scratch = self._thread_scratch
        if not hasattr(scratch, "resized"):
            scratch.resized = np.empty((prof.height, prof.width, 3), dtype=np.uint8)
            scratch.ordered = np.empty(self._block_shape, dtype=np.uint8)
        self.resize_into(image, scratch.resized)
        with self._prepared_lock:
            self.resizes += 1
        if self.pixel_format == "frames":
            planes = np.empty(self._block_shape, dtype=np.uint8)
            self._split_planes(scratch.resized, planes)
            return planes
        blocks = scratch.resized.reshape(self._frame_view)
        if self.input_order == "bgr":
            blocks = blocks[..., ::-1]
        levels = np.empty(self._block_shape, dtype=np.uint8) if self.pixel_format == "uint8" else scratch.ordered
        np.copyto(levels, blocks.transpose(0, 3, 1, 4, 6, 2, 5))
        if self.pixel_format == "uint8":  # the levels are the block: nothing more to do
            return levels
        block = np.empty(self._block_shape, dtype=np.float32)
        rows = prof.grid_h * prof.grid_w
        if self._shared_lut:
            _lookup(levels.reshape(rows, -1), self._luts[0], block.reshape(rows, -1))
        else:
            src = levels.reshape(rows, 3, -1)
            dst = block.reshape(rows, 3, -1)
            for c in range(3):
                _lookup(src[:, c, :], self._luts[c], dst[:, c, :])
        return block

    def _split_planes(self, resized: np.ndarray, planes: np.ndarray) -> None:
        """A resized frame `(H, W, 3)` -> its RGB planes `(3, H, W)` in place (one SIMD pass)."""
        order = (2, 1, 0) if self.input_order == "bgr" else (0, 1, 2)
        written = cv2.split(resized, [planes[c] for c in order])
        if not all(np.shares_memory(w, planes) for w in written):  # OpenCV handed back new arrays
            for c, w in zip(order, written, strict=True):
                np.copyto(planes[c], w)

    def _assemble_into(self, blocks: Sequence[np.ndarray], out: np.ndarray) -> None:
        """Prepared blocks -> the clip. Frames format: frame i is `out[i]`. Patches: frame 2k+j goes
        to temporal pair k, slot j (columns are ordered channel, temporal, py, px)."""
        if self.pixel_format == "frames":
            for i, block in enumerate(blocks):
                np.copyto(out[i], block)
            return
        t = self.profile.temporal_patch_size
        by_slot = out.reshape(len(blocks) // t, *self._block_shape[:5], t, *self._block_shape[5:])
        for i, block in enumerate(blocks):
            np.copyto(by_slot[i // t, :, :, :, :, :, i % t], block)

    def preprocess_image(self, frame: np.ndarray) -> np.ndarray:
        """One still image -> `[grid_h * grid_w, patch_dim]`, the frame repeated over the temporal
        patch (what the processor does with an image). Grid: (1, grid_h, grid_w). Not for the
        frames format: such an encoder takes whole clips of `frames_per_clip` frames."""
        if self.pixel_format == "frames":
            raise ValueError("pixel_format 'frames' encodes whole clips; a still image has no frames layout")
        resized = self.resized(frame).copy() if self._cache_slots == 0 else self.resized(frame)
        return self.patchify([resized] * self.profile.temporal_patch_size)

    def patchify(self, resized: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Already-resized frames -> the encoder input in the pixel format (`normalize_patchify`,
        `levels_patchify` or `frame_planes`). Reused by the next call."""
        if self.pixel_format == "frames":
            return self.frame_planes(resized)
        if self.pixel_format == "uint8":
            return self.levels_patchify(resized)
        return self.normalize_patchify(resized)

    def frame_planes(self, resized: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Already-resized frames -> uint8 RGB planes `[N, 3, H, W]` (the frames format). Reused by
        the next call of the same frame count."""
        frames = self._checked_resized(resized)
        out = self._planes_buffers.get(len(frames))
        if out is None:
            out = self._planes_buffers[len(frames)] = np.empty(
                (len(frames), 3, self.profile.height, self.profile.width), dtype=np.uint8)
        for i, frame in enumerate(frames):
            self._split_planes(np.ascontiguousarray(frame), out[i])
        return out

    def levels_patchify(self, resized: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Already-resized frames -> uint8 levels `[rows, patch_dim]` in the processor's layout
        (RGB, not normalised). Reused by the next call."""
        ordered = self._ordered(resized)
        return ordered.reshape(-1, self.profile.patch_dim)

    def normalize_patchify(self, resized: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Already-resized frames (uint8 [N, H, W, 3] or N arrays [H, W, 3]; N a multiple of the
        temporal patch) -> normalised patches in the processor's layout. Exactly what transformers
        computes after its resize. Reused by the next call."""
        ordered = self._ordered(resized)
        out = self._buffers_for(len(ordered) * self.profile.temporal_patch_size)[1]
        rows = out.shape[0]
        if self._shared_lut:
            _lookup(ordered.reshape(rows, -1), self._luts[0], out)
        else:
            # Each row holds three channel blocks of (temporal * p * p) values.
            by_channel = ordered.reshape(rows, 3, -1)
            width = by_channel.shape[2]
            for c in range(3):
                _lookup(by_channel[:, c, :], self._luts[c], out[:, c * width : (c + 1) * width])
        return out

    def _ordered(self, resized: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Resized frames -> the uint8 patch-ordered buffer (grid_t, h-block, w-block, h-in,
        w-in, c, temporal, py, px), RGB."""
        prof = self.profile
        frames = self._checked_resized(resized)
        n = len(frames)
        t = prof.temporal_patch_size
        ordered = self._buffers_for(n)[0]
        for i, frame in enumerate(frames):
            blocks = frame.reshape(self._frame_view)
            if self.input_order == "bgr":
                blocks = blocks[..., ::-1]
            # (h-block, h-in, py, w-block, w-in, px, c) -> (h-block, w-block, h-in, w-in, c, py, px)
            np.copyto(ordered[i // t, :, :, :, :, :, i % t], blocks.transpose(0, 3, 1, 4, 6, 2, 5))
        return ordered

    def _checked_resized(self, resized: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Resized frames as a list, refused unless uint8 [H, W, 3] at the profile's size and a
        positive multiple of the temporal patch in number."""
        prof = self.profile
        frames = list(resized)
        n, t = len(frames), prof.temporal_patch_size
        if n == 0 or n % t:
            raise ValueError(f"frame count {n} must be a positive multiple of the temporal patch size {t}")
        for frame in frames:
            if frame.dtype != np.uint8 or frame.shape != (prof.height, prof.width, 3):
                raise ValueError(
                    f"expected resized uint8 frames [{prof.height}, {prof.width}, 3], got {frame.dtype} "
                    f"{list(frame.shape)}"
                )
        return frames


def _lookup(src: np.ndarray, lut: np.ndarray, dst: np.ndarray) -> None:
    """dst = lut[src] (uint8 -> float32) in place, for 2-D views with contiguous rows."""
    result = cv2.LUT(src, lut, dst=dst)
    if not np.shares_memory(result, dst):
        np.copyto(dst, result)
