"""LoRA adapters in the running decoder: applied from the config, switched over the inbound socket
between cycles (same model, no missed cycle, prefix rebuilt once), refused when bad."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from edge.budgets import degrade_policy
from edge.bus import CurveKeys, Publisher, Subscriber, load_public_key, make_keypair
from edge.capture import VideoFileStepper
from edge.config import load_config
from edge.feeds import SimClock, SteppedFeed
from edge.manifest import MANIFEST_FILENAME, sha256_file
from edge.messages import TOPIC_STATUS, AdapterChoice, AdapterSwitch, Status
from edge.runtime import load_model_parts, running_loop

pytest.importorskip("peft")
pytestmark = pytest.mark.slow


def config_for(bundle, *sets):
    base = [f"bundle={str(bundle)!r}", "bus.publish_endpoint='tcp://127.0.0.1:*'",
            "bus.nav_endpoint='tcp://127.0.0.1:*'", "decoder.max_tokens=24", "decoder.threads=1",
            "budgets.total_ms=60000", "budgets.decode_ms=60000", "budgets.prefill_ms=60000",
            "budgets.encode_ms=60000", "budgets.preprocess_ms=60000"]
    return load_config(None, [*base, *sets])


@pytest.fixture(scope="module")
def adapted_bundle(tiny_checkpoint, tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle with two exported adapters: "fog" (rank 4) and "snow" (rank 2)."""
    from export.lora_gguf import export_lora
    from export.tiny_lora import make_random_adapter

    root = tmp_path_factory.mktemp("adapted")
    bundle = Path(shutil.copytree(tiny_bundle, root / "bundle"))
    export_lora(make_random_adapter(tiny_checkpoint, root / "fog", b_std=0.2), bundle)
    export_lora(make_random_adapter(tiny_checkpoint, root / "snow", rank=2, seed=1, name="snow", domain="snow"),
                bundle)
    return bundle


def _rows(parts) -> np.ndarray:
    width = parts.manifest.decoder[0].n_embd_inp
    return np.random.default_rng(3).standard_normal((parts.manifest.profile.tokens_per_clip, width)).astype(np.float32)


def _decode(parts):
    return parts.decoder.decode(_rows(parts), [0.0, 0.5, 1.0, 1.5], "Navigation: no instruction.",
                                degrade_policy(0, 24), float("inf"))


def _last_logits(parts) -> np.ndarray:
    _decode(parts)
    return parts.decoder.ctx.logits()


def test_switch_equals_a_fresh_start_with_the_adapter(adapted_bundle):
    fresh = load_model_parts(config_for(adapted_bundle, "decoder.lora=[{name='fog', scale=1.0}]"))
    try:
        assert fresh.decoder.adapters.names == ["fog"] and _decode(fresh).adapters == ("fog",)
        fresh_first_logits = _last_logits(fresh)
    finally:
        fresh.close()
    parts = load_model_parts(config_for(adapted_bundle))
    try:
        model_ptr = parts.decoder.model.ptr
        base_logits = _last_logits(parts)
        parts.decoder.adapters.request([("fog", 1.0)])
        switched_logits = _last_logits(parts)
        assert parts.decoder.model.ptr == model_ptr  # the base model was not reloaded
        assert parts.decoder.prefix_builds == 2  # start + one rebuild for the switch
        # The cached prefix was rebuilt under the adapter: same as a runtime started with it.
        np.testing.assert_allclose(switched_logits, fresh_first_logits, rtol=1e-4, atol=1e-4)
        assert float(np.abs(switched_logits - base_logits).max()) > 1e-2
        parts.decoder.adapters.request([])
        np.testing.assert_allclose(_last_logits(parts), base_logits, rtol=1e-4, atol=1e-4)
        assert parts.decoder.prefix_builds == 3
    finally:
        parts.close()


def test_switch_over_the_socket_between_cycles_names_the_adapter(adapted_bundle, drive_videos):
    clock = SimClock()
    feed = SteppedFeed(VideoFileStepper(drive_videos[0], loop=True), clock, 500, 4)
    with running_loop(config_for(adapted_bundle), feed=feed, clock=clock, enforce_deadlines=False) as loop:
        planner = Publisher(loop.parts.nav_in.endpoint, bind=False)
        try:
            advice = [loop.run_cycle(loop.next_clip()).advice for _ in range(2)]
            switch = AdapterSwitch(adapters=[AdapterChoice(name="snow", scale=0.5)])
            deadline = time.monotonic() + 5
            while not loop.parts.nav_in.received.get("adapter") and time.monotonic() < deadline:
                planner.publish(switch)
                time.sleep(0.05)
                loop.poll_nav()
            advice += [loop.run_cycle(loop.next_clip()).advice for _ in range(2)]
            status = loop.status_message()
        finally:
            planner.close()
    assert [a.adapters for a in advice] == [[], [], ["snow"], ["snow"]]
    assert [a.seq for a in advice] == [0, 1, 2, 3] and all(a.advice is not None for a in advice)
    assert any(e.kind == "adapter_switch" for e in status.events)


def _status_off_the_wire(loop, listener: Subscriber) -> Status:
    """The next heartbeat as a planner receives it (published now, read from the socket)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        loop.publish_status()
        got = listener.receive(timeout_ms=100)
        if got is not None:
            while (more := listener.receive(timeout_ms=20)) is not None:  # the newest one
                got = more
            assert isinstance(got.message, Status)
            return got.message
    raise AssertionError("no status heartbeat received")


def _send_until_taken(loop, sender: Publisher, message: AdapterSwitch, seconds: float) -> bool:
    """Publish `message` from `sender` while the loop polls its inbound socket; True once one arrived."""
    before = loop.parts.nav_in.received.get("adapter", 0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sender.publish(message)
        time.sleep(0.05)
        loop.poll_nav()
        if loop.parts.nav_in.received.get("adapter", 0) > before:
            return True
    return False


def test_status_names_the_adapters_in_use_and_only_allowed_clients_switch_them(adapted_bundle, drive_videos,
                                                                              tmp_path):
    """CURVE on: a client whose key is not in the allow-list cannot switch the adapter; an allowed one
    can. The status heartbeat, read off the wire, names the set in use (name and scale) and changes
    with the first advice made under the switch, not when the switch is requested."""
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    for name in ["runtime", "planner", "intruder"]:
        make_keypair(keys, name)
    (allowed / "planner.key").write_bytes((keys / "planner.key").read_bytes())
    config = config_for(adapted_bundle, "decoder.lora=[{name='fog', scale=1.0}]", "bus.curve.enabled=true",
                        f"bus.curve.server_secret_key_file={str(keys / 'runtime.key_secret')!r}",
                        f"bus.curve.authorized_clients_dir={str(allowed)!r}")
    server_public = load_public_key(keys / "runtime.key")

    def client(name: str) -> dict:
        return {"curve_keys": CurveKeys.load(keys / f"{name}.key_secret"), "curve_server_public": server_public}

    clock = SimClock()
    feed = SteppedFeed(VideoFileStepper(drive_videos[0], loop=True), clock, 500, 4)
    to_snow = AdapterSwitch(adapters=[AdapterChoice(name="snow", scale=0.5)])
    with running_loop(config, feed=feed, clock=clock, enforce_deadlines=False) as loop:
        listener = Subscriber(loop.parts.publisher.endpoint, [TOPIC_STATUS], **client("planner"))
        intruder = Publisher(loop.parts.nav_in.endpoint, bind=False, **client("intruder"))
        planner = Publisher(loop.parts.nav_in.endpoint, bind=False, **client("planner"))
        try:
            advice = [loop.run_cycle(loop.next_clip()).advice]
            status_at_start = _status_off_the_wire(loop, listener)
            intruder_taken = _send_until_taken(loop, intruder, to_snow, seconds=2)
            advice.append(loop.run_cycle(loop.next_clip()).advice)
            planner_taken = _send_until_taken(loop, planner, to_snow, seconds=5)
            status_before_the_cycle = _status_off_the_wire(loop, listener)
            advice.append(loop.run_cycle(loop.next_clip()).advice)
            status_after = _status_off_the_wire(loop, listener)
        finally:
            for socket in (listener, intruder, planner):
                socket.close()
    assert not intruder_taken and planner_taken
    assert [a.adapters for a in advice] == [["fog"], ["fog"], ["snow"]]
    assert status_at_start.adapters == status_before_the_cycle.adapters == [AdapterChoice(name="fog", scale=1.0)]
    assert status_after.adapters == [AdapterChoice(name="snow", scale=0.5)]
    assert status_after.schema_version == 3
    counts = {e.kind: e.count for e in status_after.events}
    assert counts.get("adapter_switch") == 1 and "adapter_refused" not in counts


def _refusal(bundle: Path, tmp_path: Path, break_it) -> tuple[bool, list[str], str]:
    """Break a copy of the bundle's "snow" adapter, ask a runtime on "fog" to switch to it."""
    from edge.adapter_control import offer_adapter_switch

    broken = Path(shutil.copytree(bundle, tmp_path / "broken"))
    break_it(broken)
    parts = load_model_parts(config_for(broken, "decoder.lora=[{name='fog'}]"))
    events: list[tuple[str, str]] = []
    try:
        ok = offer_adapter_switch(parts.decoder.adapters, AdapterSwitch(adapters=[AdapterChoice(name="snow")]),
                                  lambda kind, msg: events.append((kind, msg)))
        assert _decode(parts).adapters == ("fog",)  # still running, with the adapter it had
        return ok, parts.decoder.adapters.names, " ".join(f"{k}: {m}" for k, m in events)
    finally:
        parts.close()


def _edit_snow(bundle: Path, **changes) -> None:
    path = bundle / MANIFEST_FILENAME
    manifest = json.loads(path.read_text())
    for entry in manifest["adapters"]:
        if entry["name"] == "snow":
            entry.update(changes)
    path.write_text(json.dumps(manifest))


def _corrupt(bundle: Path) -> None:
    with (bundle / "adapters/snow.gguf").open("r+b") as fh:
        fh.seek(0)
        fh.write(b"XXXX")


def _corrupt_and_rehash(bundle: Path) -> None:
    _corrupt(bundle)
    _edit_snow(bundle, sha256=sha256_file(bundle / "adapters/snow.gguf"))


def _foreign_tensor_set(bundle: Path) -> None:
    """A well-formed adapter naming a tensor the decoder does not have (an adapter for another model)."""
    import gguf

    path = bundle / "adapters/snow.gguf"
    writer = gguf.GGUFWriter(path, "qwen3vlmoe")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 4.0)
    writer.add_tensor("blk.9.attn_q.weight.lora_a", np.zeros((2, 256), np.float32))
    writer.add_tensor("blk.9.attn_q.weight.lora_b", np.zeros((256, 2), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    _edit_snow(bundle, sha256=sha256_file(path))


@pytest.mark.parametrize(("break_it", "reason"), [
    (_corrupt, "sha256"),
    (_corrupt_and_rehash, "llama.cpp refused"),
    (lambda b: _edit_snow(b, base_sha256="0" * 64), "another decoder"),
    (lambda b: _edit_snow(b, rank=8), "rank"),
    (_foreign_tensor_set, "llama.cpp refused"),
    (lambda b: (b / "adapters/snow.gguf").unlink(), "missing"),
])
def test_a_bad_adapter_is_refused_and_the_current_one_kept(adapted_bundle, tmp_path, break_it, reason):
    ok, names, said = _refusal(adapted_bundle, tmp_path, break_it)
    assert not ok and names == ["fog"]
    assert said.startswith("adapter_refused: kept fog:") and reason in said


def test_an_adapter_the_bundle_lacks_stops_the_start_with_the_reason(adapted_bundle):
    from edge.manifest import BundleError

    with pytest.raises(BundleError, match=r"decoder.lora: the bundle has no adapter 'rain' \(has \['fog', 'snow'\]\)"):
        load_model_parts(config_for(adapted_bundle, "decoder.lora=[{name='rain'}]"))


def test_bench_decode_measures_the_adapted_path_against_the_base(adapted_bundle):
    from edge.bench.decode import DecodeBenchSettings, run_decode_bench

    report = run_decode_bench(adapted_bundle, DecodeBenchSettings(prompt_tokens=32, gen_tokens=8, repeats=1,
                                                                  grammar=False, lora="fog"))
    assert report["config"]["ours_lora"] == "fog" and "generation_tokens_match" not in report["checks"]
    assert report["results"]["ours_generation"]["tokens"] == report["results"]["raw_generation"]["tokens"] == 8
    assert report["ratios"]["ours_over_raw_tokens_per_s"] > 0
