"""The exceptions of the ``cccp`` package.

A :class:`RemoteProtocolError` carries the CCCP reply code the server answers
with; :class:`CommandFailed` is raised by the client for a 4xx/5xx reply.
"""

from __future__ import annotations


class CCCPError(Exception):
    """Base of every error raised by :mod:`cccp`."""


class ProtocolError(CCCPError):
    """A violation of the CCCP protocol."""


class LocalProtocolError(ProtocolError, ValueError):
    """Our own API was misused."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something wrong; ``code`` is the reply that answers it."""

    code = 500

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class SyntaxErrorInArguments(RemoteProtocolError):
    """501 Syntax error in parameters or arguments."""

    code = 501


class NotImplementedHere(RemoteProtocolError):
    """502 Command not implemented (for this device)."""

    code = 502


class ParameterNotImplemented(RemoteProtocolError):
    """504 Command not implemented for that parameter."""

    code = 504


class FileUnavailable(RemoteProtocolError):
    """550 Requested action not taken: file unavailable."""

    code = 550


class CommandFailed(CCCPError):
    """The server answered a command with a 4xx or 5xx reply."""

    def __init__(self, code: int, lines: list[str], command: str = "") -> None:
        self.code = code
        self.lines = lines
        self.command = command
        text = " / ".join(lines)
        super().__init__(f"{command + ': ' if command else ''}{code} {text}")


class ConnectionLost(CCCPError):
    """The control connection closed before the reply came."""
