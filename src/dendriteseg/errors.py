"""Exceptions that carry a one-line, user-facing message.

Library code raises these; the CLI turns them into ``error: <message>`` and
exit code 2. They subclass the built-in types a Python caller would expect.
"""

from __future__ import annotations


class DendritesegError(Exception):
    """Base class: the message is one line that names the file and the problem."""


class InputError(DendritesegError, ValueError):
    """A file or array given by the user cannot be used as asked."""


class FormatError(InputError):
    """A path's suffix or contents do not match a supported volume format."""
