"""The project's exception types.

Every error a user can cause (a missing file, a malformed dataset, a bad option value, an unsafe
checkpoint) is raised as a subclass of :class:`MPANetError` whose message is one line naming the
path or value and the fix. The CLI turns any ``MPANetError`` into that line on stderr and exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with surrogate escapes (undecodable bytes of a file name) written as ``\\xNN``."""
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class MPANetError(Exception):
    """Base class of every user-facing error of mpanet-tf."""

    def __init__(self, message: str):
        # One line, always: the CLI prints str(error) as is. A file name that is not valid UTF-8
        # (surrogate escapes) is shown with its odd bytes as \\xNN, so printing it cannot fail.
        super().__init__(printable(" ".join(str(message).split())))


class DatasetError(MPANetError):
    """A dataset root, split file, list file or image is missing or malformed."""


class BadImageError(DatasetError):
    """An image file cannot be decoded (corrupt, truncated, not an image)."""

    def __init__(self, path, detail: str = ""):
        self.path = str(path)
        self.reason = f"cannot decode image {self.path}" + (f" ({detail})" if detail else "")
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"cannot decode image {self.path}{extra}; replace or delete the file, "
            "or pass --skip-bad-images"
        )


class ConfigError(MPANetError):
    """A configuration value or option is invalid."""


class CheckpointError(MPANetError):
    """A checkpoint, run folder or weight file is missing, unsafe or does not match the model."""


class ExportError(MPANetError):
    """An export target is refused or the export failed."""


class WeightsUnavailableError(CheckpointError):
    """Pretrained weights could not be found, downloaded or verified."""


class TrainingError(MPANetError):
    """Training stopped (for example on a non-finite loss)."""
