"""Exceptions that carry a one-line, user-facing message.

Library code raises these; the CLI turns them into ``error: <message>`` and
exit code 2. They subclass the built-in types a Python caller would expect.
"""

from __future__ import annotations

import math
from typing import Any


class DendritesegError(Exception):
    """Base class: the message is one line that names the file and the problem."""


class InputError(DendritesegError, ValueError):
    """A file or array given by the user cannot be used as asked."""


class FormatError(InputError):
    """A path's suffix or contents do not match a supported volume format."""


def user_message(exc: BaseException) -> tuple[str, int] | None:
    """The one line and exit code a command line shows for ``exc``; None for a bug (an internal error).

    Exit 2 for errors of the user's input or system (a missing file, a full
    disk, memory), 130 for an interrupt.
    """
    if isinstance(exc, DendritesegError):
        return str(exc), 2
    if isinstance(exc, KeyError):
        return (str(exc.args[0]) if exc.args else "unknown key"), 2
    if isinstance(exc, (OSError, ValueError)):
        name = getattr(exc, "filename", None)
        reason = getattr(exc, "strerror", None) or str(exc)
        return (f"{name}: {reason}" if name else reason), 2
    if isinstance(exc, MemoryError):
        return "out of memory; use a lazy format (Zarr, HDF5, TIFF) and smaller slabs", 2
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted; no partial output was left", 130
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM); no partial output was left", 143
    return None


def parse_key_values(pairs: list[str] | None, option: str = "--option") -> dict[str, object]:
    """``["beta=1.5", "name=x"]`` -> ``{"beta": 1.5, "name": "x"}`` (values read as JSON where they parse)."""
    import json

    options: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{option}: expected KEY=VALUE, got {pair!r}")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    return options


class MissingExtra(DendritesegError, ImportError):
    """An optional part of the package is not installed; the message names the extra to install."""


def require(module: str, extra: str, what: str) -> Any:
    """Import ``module``, or raise :class:`MissingExtra` saying that ``what`` needs ``extra``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{what} needs the '{extra}' extra: pip install 'dendriteseg[{extra}]'") from None


class OutputError(DendritesegError, OSError):
    """An output could not be written (full disk, permissions); the message names the user's path."""

    def __str__(self) -> str:  # OSError would format (errno, strerror); keep the one line
        return str(self.args[0]) if self.args else ""


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM); raised like KeyboardInterrupt so outputs are cleaned up."""


def on_sigterm(signum: int, frame: object) -> None:
    """A SIGTERM handler: raise :class:`Terminated`, which unwinds like Ctrl-C (outputs are cleaned up)."""
    raise Terminated()


def internal_message(exc: BaseException) -> tuple[str, int]:
    """The one line (and exit code 1) for an unexpected error: a bug to report."""
    return f"internal error ({type(exc).__name__}: {exc}); set DENDRITESEG_DEBUG=1 for a traceback", 1


def check_ranges(settings: Any, ranges: dict[str, tuple], prefix: str = "") -> None:
    """Refuse a numeric setting outside its range (or not finite), naming it and the range."""
    for name, (low, high, low_allowed) in ranges.items():
        value = getattr(settings, name)
        below = value < low if low_allowed else value <= low
        if not math.isfinite(value) or below or (high is not None and value > high):
            bound = f">= {low}" if low_allowed else f"> {low}"
            allowed = f"{bound} and <= {high}" if high is not None else bound
            raise InputError(f"{prefix}{name}: must be {allowed}, got {value}")
