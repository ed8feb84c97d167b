"""Hostile inbound nav traffic against the running loop: nothing crashes, nothing goes unaccounted."""

from __future__ import annotations

import time

import pytest

from edge.bench.fuzz import run_fuzz_campaign
from edge.bench.navfuzz import FAMILIES
from edge.bus import Publisher
from edge.messages import Maneuver, NavInstruction
from edge.runtime import load_model_parts, running_loop
from tests.edge.test_loop import loop_config, stepped_feed

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_generated_hostile_messages_are_all_used_or_counted(tiny_bundle, drive_videos):
    report = run_fuzz_campaign(tiny_bundle, drive_videos[0], messages=400, seed=1)
    work = report["work"]
    assert work["crashes"] == 0, work["crash_messages"]
    assert work["messages_sent"] == 400 and work["unaccounted"] == 0
    assert set(work["sent_per_family"]) == {family.__name__.replace("_tricks", "") for family in FAMILIES}
    reasons = work["rejected_per_reason"]
    assert work["used"] + sum(reasons.values()) == 400  # used, or rejected under a named reason
    assert work["used"] >= work["sent_per_family"]["valid"]
    for reason in ("nav_malformed", "nav_bad_json", "nav_invalid", "nav_oversized", "nav_unknown_topic",
                   "nav_injection"):
        assert reasons.get(reason, 0) > 0, reason
    assert work["status_inbound_rejected"] == reasons  # what status publishes is the same count


@pytest.mark.timeout(300)
def test_junk_in_front_of_a_valid_instruction_does_not_delay_it(tiny_bundle, drive_videos):
    config = loop_config(tiny_bundle)
    models = load_model_parts(config)
    feed, clock = stepped_feed(drive_videos[0])
    try:
        with running_loop(config, models=models, feed=feed, clock=clock, enforce_deadlines=False) as loop:
            sender = Publisher(loop.parts.nav_in.endpoint, bind=False)
            deadline = time.monotonic() + 30
            while loop.nav.accepted == 0 and time.monotonic() < deadline:  # the subscription is through
                sender.publish(NavInstruction(nav_id="probe", maneuver=Maneuver.CONTINUE, distance_m=0))
                time.sleep(0.1)
                loop.poll_nav()
            for _ in range(50):
                sender.send_raw([b"nav", b"{not json"])
            sender.publish(NavInstruction(nav_id="n1", maneuver=Maneuver.TURN_LEFT, distance_m=90, text="Elm St"))
            time.sleep(1.0)  # all 51 delivered to the socket
            assert loop.poll_nav() == 51  # one cycle's poll takes them all
            assert loop.nav.current(clock.mono_ns()).nav_id == "n1"
            sender.close()
    finally:
        models.close()
