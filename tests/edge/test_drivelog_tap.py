"""The drive log's hand-over: the loop's side never waits. A writer stuck on a slow disk makes the
bounded queue overflow; items are dropped, counted and reported on status, and logging resumes."""

from __future__ import annotations

import threading

import numpy as np

from edge.capture import Clip
from edge.drivelog.tap import DriveTap
from edge.feeds import SimClock
from edge.messages import Feedback
from edge.telemetry import Telemetry


class StuckDisk:
    """A sink whose first write blocks until released, as a disk that stopped answering."""

    name = "recording"

    def __init__(self):
        self.release = threading.Event()
        self.records = []

    def write(self, record):
        self.release.wait()
        self.records.append(record)

    def trigger(self, reason, log_time_ns):
        pass

    def close(self):
        pass


def clip(seq: int) -> Clip:
    image = np.full((48, 64, 3), seq % 256, dtype=np.uint8)
    return Clip(frames=(image,) * 2, frame_ids=(seq, seq + 1), t_mono_ns=(seq, seq + 1), t_wall_ns=(seq, seq + 1),
                seq=seq)


def test_a_stuck_writer_drops_and_reports_never_blocks():
    disk, telemetry = StuckDisk(), Telemetry()
    tap = DriveTap([disk], SimClock(), telemetry, queue_size=4)
    handed = threading.Event()

    def loop_side():
        for n in range(50):
            tap.clip(clip(2 * n))
            tap.message(Feedback(advice_seq=n, reason="test"))
        handed.set()

    worker = threading.Thread(target=loop_side)
    worker.start()
    assert handed.wait(10), "the loop's side waited for the writer"
    assert tap.dropped >= 100 - 4 - 1  # the queue's 4 items and the one stuck in the writer survive
    event = {e.kind: e for e in telemetry.events()}["drivelog_dropped"]
    assert event.count == tap.dropped and str(tap.dropped) in event.message
    disk.release.set()
    tap.close()
    # What was queued is written once the disk answers: the stuck item and the 4 queued ones
    # (a clip is two frame records), nothing more.
    assert len(disk.records) == tap.written and 5 <= tap.written <= 2 * 5
