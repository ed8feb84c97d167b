"""Input checks that run before any model loads: a wrong camera, video or endpoint is refused in
one line within a second, instead of after the bundle has been loaded (or built)."""

from __future__ import annotations

from pathlib import Path

import zmq

from edge.bus import BusError
from edge.capture import VideoFileStepper
from edge.capture.sources import CaptureError, open_capture, parse_source
from edge.config import RuntimeConfig
from edge.manifest import BundleError

ENDPOINT_KEYS = ("publish_endpoint", "nav_endpoint")


def check_video_file(path: Path | str) -> VideoFileStepper:
    """A video file that exists, is recognised and decodes its first frame (CaptureError otherwise).
    The caller closes the returned stepper."""
    return VideoFileStepper(path)


def check_camera(source: str) -> None:
    """Open and release a file or device camera. Network streams are not probed: the capture
    reconnects to them with back-off, as it does when one drops mid-run."""
    spec = parse_source(source)
    if spec.kind == "network":
        return
    if spec.is_file:
        check_video_file(str(spec.target)).close()
        return
    open_capture(spec).release()


def check_endpoints_free(config: RuntimeConfig) -> None:
    """Bind (and release) every endpoint the runtime will bind: one held by another process is
    refused here, naming the key."""
    context: zmq.Context = zmq.Context.instance()
    for key in ENDPOINT_KEYS:
        endpoint = getattr(config.bus, key)
        sock = context.socket(zmq.PUB)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise BusError(f"config key 'bus.{key}' = {endpoint!r}: cannot bind it ({exc}); "
                           f"is another runtime or replay using it?") from None
        finally:
            sock.close(0)


def check_bundle_folder(bundle: Path | str) -> None:
    """The cheap part of a bundle check (the folder and its manifest exist); hashes and shapes are
    checked when it loads."""
    path = Path(bundle)
    if not path.is_dir():
        raise BundleError(f"bundle {path} does not exist or is not a folder")
    if not (path / "manifest.json").is_file():
        raise BundleError(f"bundle {path} has no manifest.json (not a bundle, or an export cut short)")


def check_runtime_inputs(config: RuntimeConfig) -> None:
    """What `edge run` checks before loading a model: the camera, the endpoints, the bundle."""
    if not config.camera.source:
        raise CaptureError("no camera source given (config key 'camera.source' or --camera)")
    check_camera(config.camera.source)
    check_endpoints_free(config)
    if config.bundle is not None:
        check_bundle_folder(config.bundle)
