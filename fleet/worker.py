"""A fleet worker: loads the bundle once, checks it against the driver's hash, replays many drives.

The class is plain Python; fleet.driver wraps it in `ray.remote` (so this module does not need ray to
be imported, and a test can run a worker in-process). Each drive is replayed exactly as `edge eval`
replays a scene (train.eval.run_scene: lock-step, the real loop, ZeroMQ on free loopback
ports), once per precision combination, with the models of every combination loaded once.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from edge.errors import EdgeError
from edge.manifest import BundleError, load_bundle
from fleet.drives import DriveError, check_drive
from fleet.outcome import BAD_INPUT, WORKER_FAULT, DriveOutcome
from train.dataset import Scene
from train.eval import Combo, run_scene


def thread_overrides(threads: int) -> list[str]:
    """Configuration keys that keep a worker on its share of the cores (0: the backends decide)."""
    return [f"vision.threads={threads}", f"decoder.threads={threads}"]


def pin_threads(threads: int) -> None:
    """OpenCV's and OpenMP's pools on the worker's share of the cores (0: leave them)."""
    if threads:
        import cv2

        cv2.setNumThreads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def checked_bundle(bundle: str, expected_sha256: str, worker: str) -> tuple[Path, str | None]:
    """The bundle's folder with its files verified, and why this worker refuses it (None: it is the
    driver's bundle, hash for hash)."""
    try:
        manifest, bundle_dir = load_bundle(bundle, verify_hashes=True)
    except BundleError as exc:
        return Path(bundle), f"bundle on worker {worker}: {exc}"
    if manifest.bundle_sha256() != expected_sha256:
        return bundle_dir, (f"bundle on worker {worker} differs from the driver's: sha256 "
                            f"{manifest.bundle_sha256()[:12]} != {expected_sha256[:12]}")
    return bundle_dir, None


class ReplayWorker:
    def __init__(self, bundle: str, expected_sha256: str, combos: list[str], threads: int = 1):
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._models: dict[str, tuple[object, object]] = {}  # combo name -> (config, models)
        pin_threads(threads)
        self._bundle_dir, self.bundle_error = checked_bundle(bundle, expected_sha256, self.name)
        if self.bundle_error is None:
            self._load_models([Combo.parse(c) for c in combos], threads)

    def _load_models(self, combos: list[Combo], threads: int) -> None:
        from edge.runtime import load_model_parts
        from sim.replay import replay_config

        for combo in combos:
            config = replay_config(self._bundle_dir, vision_precision=combo.vision, decoder_quant=combo.decoder,
                                   overrides=["vision.backend='onnxruntime'", *thread_overrides(threads)])
            self._models[combo.name] = (config, load_model_parts(config, verify_hashes=False))  # verified above

    def pid(self) -> int:
        return os.getpid()

    def replay(self, drive: Scene) -> DriveOutcome:
        """Replay one drive under every combination; failures come back as the outcome's error."""
        started, cpu_started = time.monotonic(), time.process_time()
        outcome = DriveOutcome(drive, self.name)
        if self.bundle_error is not None:
            outcome.error, outcome.error_kind = self.bundle_error, WORKER_FAULT
            return outcome
        try:
            check_drive(drive)
            for name, (config, models) in self._models.items():
                outcome.runs[name] = run_scene(self._bundle_dir, drive, config, models)
        except (DriveError, EdgeError) as exc:
            outcome.runs, outcome.error, outcome.error_kind = {}, str(exc), BAD_INPUT
        except Exception as exc:  # anything else is this worker's fault until shown otherwise: retried elsewhere
            outcome.runs, outcome.error, outcome.error_kind = {}, f"{type(exc).__name__}: {exc}", WORKER_FAULT
        outcome.wall_s, outcome.cpu_s = time.monotonic() - started, time.process_time() - cpu_started
        return outcome

    def close(self) -> None:
        for _config, models in self._models.values():
            models.close()  # type: ignore[attr-defined]
        self._models.clear()
