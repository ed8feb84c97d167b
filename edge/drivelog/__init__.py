"""Drive logs: what the runtime saw and said, in MCAP, for replay, live viewing and bad-case capture.

The loop hands each clip and each wire message to a ``DriveTap`` (a bounded queue, never a wait);
one writer thread turns them into ``LogRecord``s (frames JPEG-encoded there, not on the loop
thread) and gives each record to its sinks: the rolling MCAP log (``McapLog``), the bad-case
capture (``CaptureSink``) and the Foxglove live view (``LiveView``). ``read_drive_log`` reads a
log back for ``edge replay``.
"""

from edge.drivelog.channels import CHANNELS, TOPIC_CAMERA, LogRecord
from edge.drivelog.tap import DriveTap

__all__ = ["CHANNELS", "TOPIC_CAMERA", "DriveTap", "LogRecord"]
