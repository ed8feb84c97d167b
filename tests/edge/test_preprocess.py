"""Our preprocessing against the transformers Qwen2/3-VL processor on the same frames.

The reference is transformers itself: `Qwen2VLImageProcessorPil` (torchvision-free) for images,
and for clips (frame pairs) the Qwen3-VL video processor's own `patchify` on frames rescaled and
normalised by the image processor's own functions (the video processor's normalise step needs
torchvision, which this project never installs).
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from edge.manifest import CameraProfile, Normalization
from edge.preprocess import Preprocessor

PROFILE = CameraProfile(width=448, height=256, frames_per_clip=4)
QWEN3_VL = Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
# Different per channel: a swapped BGR/RGB order cannot hide behind equal statistics.
OPENAI_CLIP = Normalization(
    mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711)
)
NORMALIZATIONS = pytest.mark.parametrize("norm", [QWEN3_VL, OPENAI_CLIP], ids=["qwen3vl", "clip"])


def hf_image_processor(profile: CameraProfile, norm: Normalization, **size):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    kwargs = {"size": size} if size else {"do_resize": False}
    return transformers.Qwen2VLImageProcessorPil(
        patch_size=profile.patch_size,
        temporal_patch_size=profile.temporal_patch_size,
        merge_size=profile.merge_size,
        image_mean=list(norm.mean),
        image_std=list(norm.std),
        rescale_factor=norm.rescale_factor,
        **kwargs,
    )


def read_frames(videos, count: int, step: int = 7) -> list[np.ndarray]:
    """`count` full-size BGR frames, `step` frames apart, from the first video long enough."""
    for video in videos:
        cap = cv2.VideoCapture(str(video))
        frames = []
        index = 0
        while len(frames) < count:
            ok, frame = cap.read()
            if not ok:
                break
            if index % step == 0:
                frames.append(frame)
            index += 1
        cap.release()
        if len(frames) == count:
            return frames
    pytest.skip("no drive video long enough")


@pytest.fixture(scope="module")
def resized_frames(request) -> list[np.ndarray]:
    """Profile-sized BGR frames: noise (every grey level) plus real drive frames when present."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (PROFILE.height, PROFILE.width, 3), dtype=np.uint8) for _ in range(2)]
    from tests.conftest import DRIVE_DIR

    videos = sorted(DRIVE_DIR.glob("udacity_*.mp4"))
    if videos:
        cap = cv2.VideoCapture(str(videos[0]))
        for _ in range(2):
            ok, frame = cap.read()
            assert ok
            frames.append(cv2.resize(frame, (PROFILE.width, PROFILE.height), interpolation=cv2.INTER_AREA))
        cap.release()
    else:
        frames += [rng.integers(0, 256, frames[0].shape, dtype=np.uint8) for _ in range(2)]
    return frames


@NORMALIZATIONS
def test_image_matches_transformers_processor(resized_frames, norm):
    hf = hf_image_processor(PROFILE, norm)
    rgb = [np.ascontiguousarray(f[:, :, ::-1]) for f in resized_frames]
    want = hf(images=rgb, return_tensors="np")
    per_image = PROFILE.grid_h * PROFILE.grid_w
    assert want["image_grid_thw"].tolist() == [[1, PROFILE.grid_h, PROFILE.grid_w]] * len(rgb)
    ours = Preprocessor(PROFILE, norm, input_order="bgr")
    for i, frame in enumerate(resized_frames):
        got = ours.preprocess_image(frame)
        assert got.dtype == np.float32 and got.shape == (per_image, PROFILE.patch_dim)
        expected = want["pixel_values"][i * per_image : (i + 1) * per_image]
        assert np.max(np.abs(got - expected)) <= 1e-6


@NORMALIZATIONS
def test_clip_matches_transformers_video_layout(resized_frames, norm):
    torch = pytest.importorskip("torch")
    hf = hf_image_processor(PROFILE, norm)
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    # transformers' own rescale + normalise (channels first), then its own video patchify.
    normalised = [
        hf.normalize(
            hf.rescale(np.ascontiguousarray(f[:, :, ::-1].transpose(2, 0, 1)), norm.rescale_factor),
            list(norm.mean),
            list(norm.std),
        )
        for f in resized_frames
    ]
    video = torch.from_numpy(np.stack(normalised))[None]
    patches, grid_t, grid_h, grid_w = Qwen3VLVideoProcessor.patchify(
        Qwen3VLVideoProcessor(),
        video,
        patch_size=PROFILE.patch_size,
        merge_size=PROFILE.merge_size,
        temporal_patch_size=PROFILE.temporal_patch_size,
    )
    ours = Preprocessor(PROFILE, norm, input_order="bgr")
    got = ours(resized_frames)
    assert (grid_t, grid_h, grid_w) == ours.grid_thw == tuple(PROFILE.grid_thw())
    assert got.shape == (PROFILE.patches_per_clip, PROFILE.patch_dim) == tuple(patches.shape[1:])
    assert np.max(np.abs(got - patches[0].numpy())) <= 1e-6

    # The same clip assembled from the image processor's output: a frame pair's rows are the first
    # frame's patches with temporal slot 1 taken from the second frame.
    images = hf(images=[np.ascontiguousarray(f[:, :, ::-1]) for f in resized_frames], return_tensors="np")
    t = PROFILE.temporal_patch_size
    per_image = images["pixel_values"].reshape(len(resized_frames), PROFILE.patches_per_pair, 3, t, -1)
    pairs = per_image[::t].copy()
    pairs[:, :, :, 1] = per_image[1::t, :, :, 1]
    assert np.max(np.abs(got - pairs.reshape(got.shape))) <= 1e-6


@pytest.mark.parametrize("resize_filter", ["fast", "area"])
def test_encoder_output_with_our_resize_stays_close(tiny_checkpoint, drive_videos, resize_filter):
    """Full-size drive frames: our crop + OpenCV resize vs the transformers processor's own PIL
    resize, both fed through the tiny checkpoint's transformers vision tower.

    The HF processor always keeps the aspect ratio, so it is handed the centre window with the
    profile's aspect (448:256 = 1.75; a numpy slice, no resampling: the same window our "crop"
    mode takes) and `longest_edge` = 448*256 pixels: its smart_resize then lands exactly on
    448x256 (1260x720 and 945x540 windows are 2.8125x and 2.109375x the profile, exact in binary),
    which the grid assertion double-checks. It has no torchvision-free video path, so each frame
    goes through as an image and the clip's frame pairs are assembled from its patches.
    """
    from export.checkpoint import CheckpointReader
    from export.vision_onnx import compare_outputs, load_vision_tower, reference_outputs

    frames = read_frames(drive_videos, PROFILE.frames_per_clip)
    hf = hf_image_processor(
        PROFILE, QWEN3_VL, shortest_edge=32 * 32, longest_edge=PROFILE.width * PROFILE.height
    )
    fh, fw = frames[0].shape[:2]
    cw = round(fh * PROFILE.width / PROFILE.height)
    x0 = (fw - cw) // 2
    hf_input = [np.ascontiguousarray(f[:, x0 : x0 + cw, ::-1]) for f in frames]
    images = hf(images=hf_input, return_tensors="np")
    assert images["image_grid_thw"].tolist() == [[1, PROFILE.grid_h, PROFILE.grid_w]] * len(frames)
    t = PROFILE.temporal_patch_size
    per_image = images["pixel_values"].reshape(len(frames), PROFILE.patches_per_pair, 3, t, -1)
    hf_clip = per_image[::t].copy()
    hf_clip[:, :, :, 1] = per_image[1::t, :, :, 1]
    hf_clip = hf_clip.reshape(PROFILE.patches_per_clip, PROFILE.patch_dim)

    ours = Preprocessor(PROFILE, QWEN3_VL, resize_mode="crop", resize_filter=resize_filter)(frames).copy()
    # The resize filters differ (PIL bicubic vs OpenCV), so pixels differ a little, not a lot.
    assert 0 < np.sqrt(np.mean((ours - hf_clip) ** 2)) < 0.02

    visual = load_vision_tower(CheckpointReader(tiny_checkpoint), progress=False)
    report = compare_outputs(
        reference_outputs(visual, ours, PROFILE), reference_outputs(visual, hf_clip, PROFILE)
    )
    assert set(report) == {"merger", "deepstack_1", "deepstack_2", "deepstack_3"}
    for name, stats in report.items():
        assert stats["cosine"] >= 0.999, (name, stats)


def test_crop_takes_the_centred_window_and_letterbox_keeps_everything():
    frame = np.full((720, 1280, 3), 100, dtype=np.uint8)
    frame[:, :10] = (0, 0, 255)  # red edges exactly where a 1.75 window of a 16:9 frame ends
    frame[:, -10:] = (0, 0, 255)
    crop = Preprocessor(PROFILE, QWEN3_VL, resize_mode="crop")
    assert np.array_equal(crop.resized(frame), np.full((256, 448, 3), 100, np.uint8))

    letterbox = Preprocessor(PROFILE, QWEN3_VL, resize_mode="letterbox")
    boxed = letterbox.resized(frame)  # 1280x720 fits as 448x252: 2 rows of bars top and bottom
    assert np.all(boxed[:2] == 128) and np.all(boxed[-2:] == 128)
    assert boxed[2:-2, 0, 2].min() > 200  # the red edge survived

    square = np.full((640, 640, 3), 30, dtype=np.uint8)
    boxed = letterbox.resized(square)  # 256x256 in the middle, mean-colour bars left and right
    assert np.all(boxed[:, :96] == 128) and np.all(boxed[:, -96:] == 128)
    assert np.all(boxed[:, 96:-96] == 30)
    pixels = letterbox.preprocess_image(square).reshape(
        PROFILE.grid_h // 2, PROFILE.grid_w // 2, 2, 2, 3, 2, 16, 16
    )
    # Bars are the uint8 level nearest the mean (128 for 0.5): they normalise to ~0 (1/255 / 0.5
    # off). The first three 32-px token columns are all bar.
    assert np.all(np.abs(pixels[:, :3]) <= 1 / 255 / 0.5 + 1e-7)
    assert np.abs(pixels[:, 4:-4]).min() > 0.5  # the grey-30 content is far from the mean


def test_profile_sized_frames_are_not_resampled(resized_frames):
    ours = Preprocessor(PROFILE, QWEN3_VL)
    for frame in resized_frames:
        assert np.array_equal(ours.resized(frame), frame)


def test_resized_frames_are_reused_across_sliding_clips(resized_frames):
    frames = [f.copy() for f in resized_frames] + [f[::-1].copy() for f in resized_frames]
    big = [cv2.resize(f, (896, 512), interpolation=cv2.INTER_CUBIC) for f in frames]
    cached = Preprocessor(PROFILE, QWEN3_VL)
    uncached = Preprocessor(PROFILE, QWEN3_VL, cache_frames=0)
    outputs = []
    for start in range(len(big) - 3):
        clip = big[start : start + 4]
        out = cached(clip)
        outputs.append(out)
        assert np.array_equal(out, uncached(clip))
    assert cached.resizes == len(big)  # each frame once, not once per clip
    assert uncached.resizes == 4 * (len(big) - 3)
    assert all(o is outputs[0] for o in outputs)  # one preallocated output buffer


def test_bad_input_is_refused_clearly(resized_frames):
    ours = Preprocessor(PROFILE, QWEN3_VL)
    with pytest.raises(ValueError, match="frames_per_clip=4"):
        ours(resized_frames[:3])
    with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\]"):
        ours.preprocess_image(resized_frames[0].astype(np.float32))
    with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\]"):
        ours.preprocess_image(resized_frames[0][:, :, 0])
    with pytest.raises(ValueError, match="multiple of the temporal patch"):
        ours.normalize_patchify(resized_frames[:3])
    with pytest.raises(ValueError, match="resize_mode"):
        Preprocessor(PROFILE, QWEN3_VL, resize_mode="stretch")


def pipelined_frames(resized_frames) -> list[np.ndarray]:
    """Camera-sized frames (the preprocessor must resize them), 8 of them for sliding clips."""
    frames = [f.copy() for f in resized_frames] + [f[::-1].copy() for f in resized_frames]
    return [cv2.resize(f, (896, 512), interpolation=cv2.INTER_CUBIC) for f in frames]


@NORMALIZATIONS
@pytest.mark.parametrize("prepared", ["all", "some", "none"])
def test_prepared_frames_give_bit_identical_clips(resized_frames, norm, prepared):
    """Frames prepared one by one (as the capture thread does) and assembled into the clip give
    exactly today's output, whether all, some or none of them were prepared beforehand."""
    frames = pipelined_frames(resized_frames)
    reference = Preprocessor(PROFILE, norm)
    pipelined = Preprocessor(PROFILE, norm)
    for start in range(len(frames) - 3):
        ids = list(range(100 + start, 104 + start))
        clip = frames[start : start + 4]
        for frame_id, frame in zip(ids, clip, strict=True):
            # "some": even ids only, so each clip mixes prepared and unprepared frames.
            if prepared == "all" or (prepared == "some" and frame_id % 2 == 0):
                pipelined.prepare_frame(frame_id, frame)
        want = reference.preprocess_clip(clip).copy()
        got = pipelined.preprocess_clip(clip, ids)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.array_equal(got, want), f"clip {start} ({prepared} prepared) differs"
    # Each frame resized once, whoever prepared it (the cache keeps frames_per_clip + 2).
    assert pipelined.resizes == len(frames)
    if prepared == "none":
        assert pipelined.prepared_hits == 3 * (len(frames) - 4)  # the sliding overlap
    else:
        assert pipelined.prepared_hits > 3 * (len(frames) - 4)


@NORMALIZATIONS
def test_uint8_pixel_format_gives_the_levels_of_the_float_output(resized_frames, norm):
    """pixel_format="uint8" (encoders that normalise in their graph) gives, on every path (whole
    clip, prepared frames by id, still image), the levels whose normalisation is the float32
    path's output bit for bit, at a quarter of the bytes."""
    from edge.preprocess import normalize_levels

    frames = pipelined_frames(resized_frames)
    floats = Preprocessor(PROFILE, norm)
    levels = Preprocessor(PROFILE, norm, pixel_format="uint8")
    for start in range(len(frames) - 3):
        clip, ids = frames[start : start + 4], list(range(start, start + 4))
        levels.prepare_frame(ids[-1], clip[-1])
        want = floats.preprocess_clip(clip).copy()
        for got in (levels.preprocess_clip(clip).copy(), levels.preprocess_clip(clip, ids)):
            assert got.dtype == np.uint8 and got.shape == want.shape
            assert np.array_equal(normalize_levels(got, norm), want), f"clip {start}"
    assert levels.ready_clips > 0  # the capture-thread path (assembled ahead) was exercised
    image = levels.preprocess_image(frames[0])
    assert np.array_equal(normalize_levels(image, norm), floats.preprocess_image(frames[0]))
    with pytest.raises(ValueError, match="pixel_format"):
        Preprocessor(PROFILE, norm, pixel_format="float16")
    with pytest.raises(ValueError, match="uint8"):
        normalize_levels(want, norm)


@pytest.mark.parametrize("input_order", ["bgr", "rgb"])
def test_frames_pixel_format_gives_the_frames_whose_patches_are_the_levels(resized_frames, input_order):
    """pixel_format="frames" (encoders that patchify in their graph) gives, on every path (whole
    clip, prepared frames by id, the capture thread's clip assembled ahead), the RGB planes whose
    patch layout is exactly the uint8 patch path's output: the graph gets the same pixels."""
    from edge.preprocess import patch_layout

    frames = pipelined_frames(resized_frames)
    if input_order == "rgb":
        frames = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames]
    levels = Preprocessor(PROFILE, QWEN3_VL, pixel_format="uint8", input_order=input_order)
    planes = Preprocessor(PROFILE, QWEN3_VL, pixel_format="frames", input_order=input_order)
    p = PROFILE
    for start in range(len(frames) - 3):
        clip, ids = frames[start : start + 4], list(range(start, start + 4))
        planes.prepare_frame(ids[-1], clip[-1])
        want = levels.preprocess_clip(clip).copy()
        for got in (planes.preprocess_clip(clip).copy(), planes.preprocess_clip(clip, ids)):
            assert got.dtype == np.uint8 and got.shape == (4, 3, p.height, p.width)
            assert np.array_equal(patch_layout(got, p.patch_size, p.temporal_patch_size, p.merge_size), want)
    assert planes.ready_clips > 0  # the capture-thread path (assembled ahead) was exercised
    # Plane 0 is red whatever the camera's channel order.
    red = 2 if input_order == "bgr" else 0
    assert np.array_equal(planes.preprocess_clip(frames[:4])[1, 0], planes.resized(frames[1])[:, :, red])
    with pytest.raises(ValueError, match="still image"):
        planes.preprocess_image(frames[0])


def test_patch_layout_of_frames_is_the_processors(resized_frames):
    """`patch_layout` (what a frames-layout graph does inside) puts every level where transformers'
    own video patchify puts it (levels in, so the layout alone is compared)."""
    torch = pytest.importorskip("torch")
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    from edge.preprocess import patch_layout

    p = PROFILE
    frames = np.stack([f[:, :, ::-1] for f in resized_frames]).transpose(0, 3, 1, 2)  # RGB (T, 3, H, W)
    want, *_ = Qwen3VLVideoProcessor.patchify(
        Qwen3VLVideoProcessor(), torch.from_numpy(frames.astype(np.float32))[None],
        patch_size=p.patch_size, merge_size=p.merge_size, temporal_patch_size=p.temporal_patch_size,
    )
    got = patch_layout(frames, p.patch_size, p.temporal_patch_size, p.merge_size)
    assert got.dtype == np.uint8 and np.array_equal(got, want[0].numpy().astype(np.uint8))


def test_prepared_block_is_used_only_for_the_same_image(resized_frames):
    """Frame ids restart when a preprocessor outlives a feed: an id seen before with another
    image must not hand back the old frame's block."""
    frames = pipelined_frames(resized_frames)
    ours = Preprocessor(PROFILE, QWEN3_VL)
    for frame_id, frame in enumerate(frames[:4]):
        ours.prepare_frame(frame_id, frame)
    got = ours.preprocess_clip(frames[4:8], [0, 1, 2, 3]).copy()
    assert np.array_equal(got, Preprocessor(PROFILE, QWEN3_VL).preprocess_clip(frames[4:8]))
    assert ours.prepared_hits == 0
    with pytest.raises(ValueError, match="4 frames but 3 frame ids"):
        ours.preprocess_clip(frames[:4], [0, 1, 2])


def test_prepare_frame_is_thread_safe(resized_frames):
    """A producer thread prepares frames while the consumer assembles sliding clips (partly from
    frames the producer has not reached yet): every clip stays bit-identical, the cache bounded."""
    import threading

    frames = pipelined_frames(resized_frames) * 2  # 16 frames, ids 0..15
    reference = Preprocessor(PROFILE, OPENAI_CLIP)
    wants = [reference.preprocess_clip(frames[s : s + 4]).copy() for s in range(len(frames) - 3)]
    ours = Preprocessor(PROFILE, OPENAI_CLIP)
    errors: list[BaseException] = []
    # Like a camera, the producer runs at most one frame past the clip the consumer is on: the
    # (least recently used) cache then never evicts a frame before its clips are assembled, so any
    # second preparation is a race.
    cache_size = PROFILE.frames_per_clip + 2
    ahead = threading.Semaphore(PROFILE.frames_per_clip + 1)

    def produce() -> None:
        try:
            for frame_id, frame in enumerate(frames):
                if not ahead.acquire(timeout=30):
                    raise TimeoutError("the consumer stopped")
                ours.prepare_frame(frame_id, frame)
        except BaseException as err:  # surfaced by the assertion below
            errors.append(err)

    producer = threading.Thread(target=produce)
    producer.start()
    for start in range(len(frames) - 3):
        got = ours.preprocess_clip(frames[start : start + 4], list(range(start, start + 4)))
        assert np.array_equal(got, wants[start]), f"clip {start} differs"
        ahead.release()  # frame `start` is needed by no later clip
    producer.join(timeout=30)
    assert not producer.is_alive() and not errors
    assert len(ours._prepared) <= cache_size
    # Nothing prepared twice: a frame in flight in the other thread is waited for, not redone.
    assert ours.resizes == len(frames)


def test_clip_assembled_ahead_is_handed_out_and_stays_intact(resized_frames):
    """Frames prepared in sampling order let prepare_frame assemble the next clip ahead; the loop
    gets that very array (no copy), and it stays intact while later frames are prepared, until
    the loop's next call."""
    frames = pipelined_frames(resized_frames)
    reference = Preprocessor(PROFILE, QWEN3_VL)
    ours = Preprocessor(PROFILE, QWEN3_VL)
    for frame_id in range(4):
        ours.prepare_frame(frame_id, frames[frame_id])
    first = ours.preprocess_clip(frames[:4], [0, 1, 2, 3])
    assert ours.ready_clips == 1 and ours.resizes == 4
    kept = first.copy()
    for frame_id in range(4, 8):  # the capture thread runs ahead by several samples
        ours.prepare_frame(frame_id, frames[frame_id])
    assert np.array_equal(first, kept)  # the held output was never a write target
    assert np.array_equal(kept, reference.preprocess_clip(frames[:4]))
    latest = ours.preprocess_clip(frames[4:8], [4, 5, 6, 7])
    assert ours.ready_clips == 2 and latest is not first
    assert np.array_equal(latest, reference.preprocess_clip(frames[4:8]))
    # A clip that is not the one assembled ahead (the loop lagging) is assembled on demand.
    lagging = ours.preprocess_clip(frames[3:7], [3, 4, 5, 6])
    assert ours.ready_clips == 2 and ours.resizes == 8
    assert np.array_equal(lagging, reference.preprocess_clip(frames[3:7]))
