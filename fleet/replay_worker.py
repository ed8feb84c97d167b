"""A worker of `edge fleet replay`: checks the bundle once, then replays whole logs one after another.

Plain Python (fleet.driver wraps it in `ray.remote`). An MCAP log is replayed exactly as `edge replay`
replays it (edge.drivelog.replay.replay_log with the configuration the log recorded, this bundle, the
same --set keys); a plain video as `edge sim` does in lock-step. The models are loaded once per
distinct model configuration (logs recorded with the same settings share one load) and kept.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from edge.config import RuntimeConfig
from edge.drivelog.reader import DriveLogError, read_drive_log
from edge.errors import EdgeError
from fleet.logs import MCAP, LogItem
from fleet.outcome import BAD_INPUT, WORKER_FAULT, LogOutcome
from fleet.replay_report import figures, log_cycles, video_cycles
from fleet.worker import checked_bundle, pin_threads, thread_overrides


def _model_key(config: RuntimeConfig) -> str:
    """What load_model_parts reads: logs that agree on it share one load of the models."""
    parts = {"vision": config.vision.model_dump(mode="json"), "decoder": config.decoder.model_dump(mode="json"),
             "cpu": config.cpu.model_dump(mode="json"), "resize": str(config.camera.resize),
             "min_agreement": config.min_agreement}
    return json.dumps(parts, sort_keys=True, default=str)


class LogReplayWorker:
    def __init__(self, bundle: str, expected_sha256: str, threads: int = 1, overrides: list[str] | None = None):
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._models: dict[str, object] = {}
        # One thread per library for prefill too: N workers on N cores must not each take every core.
        threads_keys = [*thread_overrides(threads), f"decoder.threads_batch={threads}"] if threads else []
        self._overrides = [*threads_keys, *(overrides or [])]
        pin_threads(threads)
        self._bundle_dir, self.bundle_error = checked_bundle(bundle, expected_sha256, self.name)

    def pid(self) -> int:
        return os.getpid()

    def _models_for(self, config: RuntimeConfig):
        from edge.runtime import load_model_parts

        key = _model_key(config)
        if key not in self._models:
            self._models[key] = load_model_parts(config, verify_hashes=False)  # the files were checked at start
        models = self._models[key]
        config.camera.frames_per_clip = models.manifest.profile.frames_per_clip  # as a fresh load would set it
        return models

    def replay(self, item: LogItem) -> LogOutcome:
        """Replay one log (or video); failures come back as the outcome's error."""
        started, cpu_started = time.monotonic(), time.process_time()
        outcome = LogOutcome(item, self.name)
        if self.bundle_error is not None:
            outcome.error, outcome.error_kind = self.bundle_error, WORKER_FAULT
            return outcome
        try:
            outcome.cycles, outcome.figures = (self._replay_log(item.path) if item.kind == MCAP
                                               else self._replay_video(item))
        except (DriveLogError, EdgeError) as exc:
            outcome.error, outcome.error_kind = f"{exc}".splitlines()[0][:500], BAD_INPUT
        except Exception as exc:  # this worker's fault until shown otherwise: retried elsewhere
            outcome.error, outcome.error_kind = f"{type(exc).__name__}: {exc}"[:500], WORKER_FAULT
        outcome.wall_s, outcome.cpu_s = time.monotonic() - started, time.process_time() - cpu_started
        return outcome

    def _replay_log(self, path: Path) -> tuple[list[dict], dict]:
        from edge.commands.replay import replay_config_for
        from edge.drivelog.replay import replay_log

        log = read_drive_log([path])
        config = replay_config_for(log.metadata, self._bundle_dir, self._overrides, None)
        cycles = log_cycles(replay_log(log, config, models=self._models_for(config)))
        return cycles, figures(cycles, log)

    def _replay_video(self, item: LogItem) -> tuple[list[dict], dict]:
        from edge.preflight import check_video_file
        from sim.replay import ReplayOptions, replay_config, replay_scene

        check_video_file(item.path).close()  # one line naming the file if it does not decode
        config = replay_config(self._bundle_dir, overrides=self._overrides)
        result = replay_scene(self._bundle_dir, item.path, item.nav, None, ReplayOptions(annotate=False),
                              config=config, models=self._models_for(config))
        cycles = video_cycles([o.advice for o in result.outcomes])
        return cycles, figures(cycles)

    def close(self) -> None:
        for models in self._models.values():
            models.close()  # type: ignore[attr-defined]
        self._models.clear()
