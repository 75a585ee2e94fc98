"""Errors that are the user's to fix. The CLI prints them on one line and exits non-zero."""
from __future__ import annotations


class GuidedError(ValueError):
    """A user mistake (bad argument, bad file, missing weights): one line, no traceback."""


class ImageLoadError(GuidedError):
    """An input image that cannot be read: corrupt, truncated, empty, too large or not allowed."""


class WeightsNotFoundError(GuidedError, FileNotFoundError):
    """Model weights that are not on this machine; the message says what is missing and how to get it."""


class NonFiniteError(GuidedError, FloatingPointError):
    """A computation that produced NaN or inf where no recovery was possible."""


def one_line(text: object) -> str:
    """`text` (or an exception's message) folded onto one line: what the CLI prints after `error:`."""
    return " ".join(str(text).split()) or (type(text).__name__ if isinstance(text, BaseException) else "")
