"""The driver of `edge fleet eval` and `edge fleet replay`: hands drives (or drive logs) to Ray actors,
retries what a dead or faulty worker dropped, stops cleanly on Ctrl-C, and writes the report
(`edge eval`'s plus a row per drive; for replay, a row per log and totals: fleet.replay_report).

Scheduling: one drive in flight per worker (a worker replays one drive at a time anyway, and a drive
in flight on a worker that dies is the only one lost with it). A drive whose worker died or was at
fault is retried, on another worker where there is one; after `max_attempts` it is reported failed
with the reason. A drive whose own input is bad fails at once (every worker would say the same).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.manifest import load_bundle
from fleet.drives import find_drives
from fleet.outcome import BAD_INPUT, WORKER_FAULT, DriveOutcome
from fleet.report import fleet_report, write_json
from fleet.session import ray_session
from fleet.worker import ReplayWorker
from train.dataset import Scene
from train.eval import choose_combos


@dataclass
class FleetOptions:
    workers: int = 2
    threads: int = 1  # per worker: vision and decoder threads, and the Ray CPUs each actor holds
    address: str | None = None  # ray://HOST:PORT or a cluster address; None: RAY_ADDRESS, else local
    combos: list[str] | None = None
    max_attempts: int = 2
    progress: bool = True
    # Called with (event, details) as the run goes: "workers" (new workers' pids), "dispatched"
    # ((drive, worker pid)), "done" / "failed" (the DriveOutcome).
    on_event: Callable[[str, object], None] | None = None
    expected_sha256: str | None = None  # the bundle hash the workers must find (default: the driver's)


class Scheduler:
    """Drives waiting, drives in flight, live workers; one loop step per finished task."""

    def __init__(self, ray, actor_class, actor_args: tuple, options: FleetOptions, drives: list,
                 outcome_class: type = DriveOutcome):
        self.ray, self.actor_class, self.actor_args, self.options = ray, actor_class, actor_args, options
        self.outcome_class = outcome_class  # what a worker returns (DriveOutcome, LogOutcome): built here for faults
        self.waiting: list[Scene] = list(drives)
        self.tried_on: dict[str, set[int]] = {d.rel: set() for d in drives}  # actor ids that failed it
        self.attempts: dict[str, int] = dict.fromkeys(self.tried_on, 0)
        self.finished: dict[str, DriveOutcome] = {}
        self.in_flight: dict[object, tuple[int, Scene]] = {}  # object ref -> (actor id, drive)
        self.actors: dict[int, object] = {}
        self.pids: dict[int, int] = {}  # actor id -> its process id (on its node)
        self.idle: list[int] = []
        self.replacements_left = options.workers
        self.last_fault: str | None = None  # the latest worker fault, for drives no worker is left to run
        self.ready_at: float | None = None  # when the first workers had loaded the bundle
        self._next_id = 0

    def start_workers(self, count: int) -> None:
        new = list(range(self._next_id, self._next_id + count))
        self._next_id += count
        for actor_id in new:
            self.actors[actor_id] = self.actor_class.remote(*self.actor_args)
        pids = self.ray.get([self.actors[i].pid.remote() for i in new])  # waits for the bundle loads
        self.pids.update(zip(new, pids, strict=True))
        self.idle.extend(new)
        if self.ready_at is None:
            self.ready_at = time.monotonic()
        self._emit("workers", pids)

    def dispatch(self) -> None:
        """Give each idle worker the first waiting drive that has not failed on it."""
        for actor_id in list(self.idle):
            pick = next((d for d in self.waiting if actor_id not in self.tried_on[d.rel]
                         or set(self.actors) <= self.tried_on[d.rel]), None)  # no other worker left to try
            if pick is None:
                continue
            self.waiting.remove(pick)
            self.idle.remove(actor_id)
            self.attempts[pick.rel] += 1
            self.in_flight[self.actors[actor_id].replay.remote(pick)] = (actor_id, pick)
            self._emit("dispatched", (pick.rel, self.pids[actor_id]))

    def step(self) -> None:
        """Wait for one task and account for it."""
        (ref,), _ = self.ray.wait(list(self.in_flight), num_returns=1)
        actor_id, drive = self.in_flight.pop(ref)
        try:
            outcome: DriveOutcome = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            reason = f"worker died while replaying it ({type(exc).__name__})"
            self._failed_attempt(actor_id, drive, self.outcome_class(drive, f"actor {actor_id}", error=reason,
                                                                     error_kind=WORKER_FAULT))
            self._worker_died(actor_id)  # after the drive is back in the queue: a replacement is wanted for it
            return
        if outcome.ok or outcome.error_kind == BAD_INPUT:
            self._finish(outcome)
        else:
            self._failed_attempt(actor_id, drive, outcome)
            if outcome.error.startswith("bundle on worker"):  # a worker with a wrong bundle takes no more work
                self._retire(actor_id)
                return
        self.idle.append(actor_id)

    def _failed_attempt(self, actor_id: int, drive: Scene, outcome: DriveOutcome) -> None:
        self.tried_on[drive.rel].add(actor_id)
        self.last_fault = outcome.error
        if self.attempts[drive.rel] >= self.options.max_attempts:
            self._finish(outcome)
        else:
            self.waiting.insert(0, drive)

    def _worker_died(self, actor_id: int) -> None:
        self._retire(actor_id)
        if self.replacements_left > 0 and self.waiting:
            self.replacements_left -= 1
            try:
                self.start_workers(1)
            except self.ray.exceptions.RayError:
                self._retire(self._next_id - 1)

    def _retire(self, actor_id: int) -> None:
        actor = self.actors.pop(actor_id, None)
        if actor is not None:
            self.ray.kill(actor)
        if actor_id in self.idle:
            self.idle.remove(actor_id)

    def _finish(self, outcome: DriveOutcome) -> None:
        self.finished[outcome.drive.rel] = outcome
        self._emit("done" if outcome.ok else "failed", outcome)

    def fail_the_rest(self) -> None:
        reason = f"no worker left to replay it (last worker fault: {self.last_fault})"
        for drive in self.waiting:
            self._finish(self.outcome_class(drive, "-", error=reason, error_kind=WORKER_FAULT))
        self.waiting.clear()

    def shutdown(self) -> None:
        for actor_id in list(self.actors):
            self._retire(actor_id)

    def _emit(self, event: str, details: object) -> None:
        if self.options.on_event is not None:
            self.options.on_event(event, details)


def run_fleet(bundle: Path | str | None, roots: list[Path], out: Path | str | None,
              options: FleetOptions | None = None) -> dict:
    """Replay every drive under `roots` through the bundle on Ray; write (if `out`) and return the report."""
    options = options or FleetOptions()
    manifest, bundle_dir = load_bundle(_bundle_or_default(bundle))
    combos, reference = choose_combos(manifest, options.combos)
    drives = find_drives([Path(r) for r in roots])
    expected = options.expected_sha256 or manifest.bundle_sha256()
    actor_args = (str(bundle_dir), expected, [c.name for c in combos], options.threads)
    scheduler, timing, interrupted = run_on_ray(ReplayWorker, actor_args, drives, options, DriveOutcome)
    report = fleet_report(manifest, bundle_dir, drives, combos, reference, scheduler.finished, scheduler.attempts,
                          workers=options.workers, timing=timing, interrupted=interrupted)
    if out is not None:
        write_json(out, report)
    return report


def _bundle_or_default(bundle: Path | str | None) -> Path | str:
    if bundle is not None:
        return bundle
    from train.default import ensure_default_bundle

    return ensure_default_bundle()


def run_on_ray(worker_class: type, actor_args: tuple, items: list, options: FleetOptions,
               outcome_class: type) -> tuple[Scheduler, dict[str, float], bool]:
    """Run every item on Ray actors of `worker_class`; Ctrl-C ends the run with what finished."""
    started, interrupted = time.monotonic(), False
    with ray_session(options.address, num_cpus=max(options.workers * max(options.threads, 1), os.cpu_count() or 1)) as ray:
        actor_class = ray.remote(num_cpus=max(options.threads, 1), max_restarts=0, max_task_retries=0)(worker_class)
        scheduler = Scheduler(ray, actor_class, actor_args, options, items, outcome_class)
        try:
            _drive_the_run(scheduler, options, len(items))
        except KeyboardInterrupt:
            interrupted = True  # what finished is reported; the rest is "not_run"
        finally:
            scheduler.shutdown()
    ended = time.monotonic()
    return scheduler, {"wall_s": ended - started, "startup_s": (scheduler.ready_at or ended) - started}, interrupted


def run_fleet_replay(bundle: Path | str | None, paths: list[Path], out: Path | str | None,
                     options: FleetOptions | None = None, overrides: list[str] | None = None,
                     with_cycles: bool = False) -> dict:
    """Replay every MCAP log (and plain video) named or under `paths` through the bundle on Ray, as
    `edge replay` does one by one; write (if `out`) and return the report (fleet.replay_report)."""
    from fleet.logs import find_logs
    from fleet.outcome import LogOutcome
    from fleet.replay_report import replay_report
    from fleet.replay_worker import LogReplayWorker

    options = options or FleetOptions()
    manifest, bundle_dir = load_bundle(_bundle_or_default(bundle))
    items = find_logs([Path(p) for p in paths])
    expected = options.expected_sha256 or manifest.bundle_sha256()
    actor_args = (str(bundle_dir), expected, options.threads, list(overrides or []))
    scheduler, timing, interrupted = run_on_ray(LogReplayWorker, actor_args, items, options, LogOutcome)
    report = replay_report(manifest.bundle_sha256(), items, scheduler.finished, scheduler.attempts,
                           workers=options.workers, timing=timing, interrupted=interrupted, with_cycles=with_cycles)
    if out is not None:
        write_json(out, report)
    return report


def _drive_the_run(scheduler: Scheduler, options: FleetOptions, total: int) -> None:
    from tqdm import tqdm

    unit = "drive" if scheduler.outcome_class is DriveOutcome else "log"
    with tqdm(total=total, unit=unit, disable=not options.progress, dynamic_ncols=True) as bar:
        counts = {"done": 0, "failed": 0}
        chained = options.on_event

        def on_event(event: str, details: object) -> None:
            if event in counts:
                counts[event] += 1
                bar.set_postfix(counts, refresh=False)
                bar.update(1)
            if chained is not None:
                chained(event, details)

        scheduler.options.on_event = on_event
        try:
            scheduler.start_workers(options.workers)
            while scheduler.waiting or scheduler.in_flight:
                if not scheduler.actors:
                    scheduler.fail_the_rest()
                    break
                scheduler.dispatch()
                if scheduler.in_flight:
                    scheduler.step()
        finally:
            scheduler.options.on_event = chained
