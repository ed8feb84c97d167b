"""The one base class of the errors a user can cause: a bad bundle, config, camera, video, endpoint.

The `edge` command catches `EdgeError` once and prints its message as one line (no traceback);
each subclass also derives from the builtin it refines (ValueError, RuntimeError), so callers that
catch those keep working."""


class EdgeError(Exception):
    """An input or environment problem; the message names the file, key or source and the reason."""
