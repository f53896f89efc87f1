"""The one exception type the CLI turns into a clean message and a non-zero exit instead of a traceback."""

from __future__ import annotations


class AzureDLError(Exception):
    """A problem the user can act on: what was wrong (with the value) and, in `hint`, what to do about it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class SpecError(AzureDLError):
    """A job, sweep, pipeline or deployment spec that fails validation (raised before any I/O)."""


class ConfigError(AzureDLError):
    """Missing or inconsistent settings: workspace, credentials, catalogue entries."""
