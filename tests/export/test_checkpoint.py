"""CheckpointReader: shard index, validation before work, tensor-by-tensor streaming."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from export.checkpoint import CheckpointError, CheckpointReader  # noqa: E402
from export.tiny import make_tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def sharded_bf16(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "sharded", seed=3, shard_size_mb=8, dtype="bfloat16")


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_reads_the_shard_index_without_loading_tensors(sharded_bf16):
    reader = CheckpointReader(sharded_bf16)
    index = json.loads((sharded_bf16 / "model.safetensors.index.json").read_text())
    assert sorted(reader.tensor_names()) == sorted(index["weight_map"])
    assert len(reader.shard_files) == len(set(index["weight_map"].values())) > 2
    assert reader.index_path is not None
    assert reader.total_bytes == index["metadata"]["total_size"]
    name = "model.language_model.layers.0.mlp.experts.gate_up_proj"
    assert reader.shape(name) == (8, 1024, 256) and reader.dtype(name) == "BF16"


def test_get_returns_fp32_equal_to_the_stored_bf16(sharded_bf16):
    reader = CheckpointReader(sharded_bf16)
    index = json.loads((sharded_bf16 / "model.safetensors.index.json").read_text())
    for name in ("model.visual.patch_embed.proj.weight", "lm_head.weight",
                 "model.language_model.layers.3.mlp.experts.down_proj"):
        stored = safetensors_torch.load_file(sharded_bf16 / index["weight_map"][name])[name]
        got = reader.get(name)
        assert got.dtype == torch.float32
        assert torch.equal(got, stored.float())
        assert torch.equal(reader.get(name, dtype="stored"), stored)


def test_iter_prefix_streams_only_the_prefix(sharded_bf16):
    reader = CheckpointReader(sharded_bf16)
    assert reader.vision_prefix() == "model.visual."
    seen = [name for name, tensor in reader.iter_prefix("model.visual.") if tensor.dtype == torch.float32]
    assert seen and all(n.startswith("model.visual.") for n in seen)
    assert sorted(seen) == sorted(n for n in reader.tensor_names() if n.startswith("model.visual."))


def test_single_file_checkpoint(tiny_checkpoint):
    reader = CheckpointReader(tiny_checkpoint)
    assert reader.index_path is None and [p.name for p in reader.shard_files] == ["model.safetensors"]
    assert reader.config["model_type"] == "qwen3_vl_moe"
    assert reader.text_config["hidden_size"] == 256


def test_missing_shard_is_reported_before_any_work(sharded_bf16, tmp_path):
    broken = _copy(sharded_bf16, tmp_path / "broken")
    victim = sorted(broken.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=f"missing: {victim.name}"):
        CheckpointReader(broken)


def test_truncated_shard_is_reported(sharded_bf16, tmp_path):
    broken = _copy(sharded_bf16, tmp_path / "truncated")
    victim = sorted(broken.glob("model-*.safetensors"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="truncated shard"):
        CheckpointReader(broken)


def test_index_naming_a_tensor_the_shard_lacks(sharded_bf16, tmp_path):
    broken = _copy(sharded_bf16, tmp_path / "lying_index")
    index_path = broken / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    first_shard = sorted(set(index["weight_map"].values()))[0]
    index["weight_map"]["model.visual.extra.weight"] = first_shard
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="model.visual.extra.weight"):
        CheckpointReader(broken)


@pytest.mark.parametrize(
    "changes",
    [
        {"model_type": "qwen3_vl", "architectures": ["Qwen3VLForConditionalGeneration"]},
        {"architectures": ["Qwen2_5_VLForConditionalGeneration"]},
        {"model_type": "llama"},
    ],
)
def test_wrong_architecture_is_refused(tiny_checkpoint, tmp_path, changes):
    other = _copy(tiny_checkpoint, tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    config.update(changes)
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unsupported architecture.*Qwen3VLMoeForConditionalGeneration"):
        CheckpointReader(other)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        CheckpointReader(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="config.json is missing"):
        CheckpointReader(tmp_path)


def test_streaming_keeps_peak_memory_near_the_largest_tensor(tmp_path):
    """Read a 256 MiB checkpoint (64 tensors of 4 MiB, bf16) in full: peak RSS grows by a few tensors."""
    shard = tmp_path / "big"
    shard.mkdir()
    tensors = {f"t.{i:02d}": torch.full((1024, 2048), float(i), dtype=torch.bfloat16) for i in range(64)}
    safetensors_torch.save_file(tensors, str(shard / "model.safetensors"))
    del tensors
    script = textwrap.dedent(
        f"""
        import torch
        from export.checkpoint import CheckpointReader

        def hwm():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024

        reader = CheckpointReader({str(shard)!r}, check_architecture=False)
        # Warm up torch's lazily loaded kernels on one tensor so the baseline holds them.
        warm = reader.get("t.00"); del warm
        before = hwm()
        total = 0.0
        for name, tensor in reader.iter_tensors():
            total += float(tensor[0, 0])
            del tensor
        print(hwm() - before, reader.total_bytes, reader.largest_tensor_bytes, total)
        """
    )
    (shard / "config.json").write_text("{}")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=str(
        __import__("pathlib").Path(__file__).resolve().parents[2]))
    grown, total_bytes, largest, checksum = out.stdout.split()
    assert float(checksum) == sum(range(64))  # every tensor really was read
    assert int(total_bytes) == 64 * 4 * 2**20
    # bf16 buffer + fp32 copy of one tensor = 3 x largest. glibc's dynamic mmap threshold moves freed
    # blocks of this size onto the heap, where fragmentation can hold a few more: the claim is that
    # growth stays a few tensors, not that it scales with the 256 MiB checkpoint (16 tensors' worth).
    print(f"peak RSS growth {int(grown) / 2**20:.1f} MiB, checkpoint {int(total_bytes) / 2**20:.0f} MiB")
    assert int(grown) < 12 * int(largest), f"peak RSS grew by {int(grown) / 2**20:.0f} MiB for a {int(total_bytes) / 2**20:.0f} MiB checkpoint"
