# SPDX-License-Identifier: MIT
"""The error family users see.

Every error a user can cause (a bad recipe, a missing file, a stale cache, a foreign checkpoint) is
a `PpiError`. The CLI entry point prints it as one line on stderr, with the fix, and exits 1. Code
below `cli` raises these and never prints or exits itself.
"""

from __future__ import annotations


class PpiError(Exception):
    """Base class of every user-facing error.

    Args:
        message: What failed, naming the file, row or field.
        hint: The command or flag that fixes it (optional).
    """

    kind = "error"

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and hint on a single line, as the CLI prints it."""
        text = " ".join(self.message.split())
        if self.hint:
            text += f" (fix: {' '.join(self.hint.split())})"
        return text


class ConfigError(PpiError):
    """A recipe, site config or option value is invalid."""

    kind = "config error"


class DataError(PpiError):
    """Input data (DICOM, XML, OCT volume, manifest row) is missing or malformed."""

    kind = "data error"


class CacheError(PpiError):
    """A prepared cache is missing, incomplete or stale."""

    kind = "cache error"


class ModelError(PpiError):
    """A checkpoint or model definition cannot be used."""

    kind = "model error"


class MissingExtraError(PpiError):
    """An optional dependency is needed; the hint names the pip extra that provides it."""

    kind = "missing dependency"

    def __init__(self, feature: str, extra: str, module: str):
        super().__init__(
            f"{feature} needs the optional package '{module}', which is not installed",
            hint=f"pip install 'ppi-cli[{extra}]'",
        )
        self.extra = extra


class DiskFullError(PpiError):
    """The file system ran out of space while an output was written; the previous output is intact."""

    kind = "error"
