"""The exceptions of the ``ptpip`` package.

Every error is a :class:`PTPIPError`. A :class:`ProtocolError` is either *local*
(our own API was misused) or *remote* (the peer misbehaved). A remote error carries
what goes on the wire in answer: an Init Fail reason or a PTP response code.
"""

from __future__ import annotations

from .constants import FailReason, ResponseCode, code_name

__all__ = [
    "ConnectionClosed",
    "FramingError",
    "InitFailed",
    "LocalProtocolError",
    "MalformedPacket",
    "OperationError",
    "PTPIPError",
    "PTPResponseError",
    "PacketTooLarge",
    "PacketTooShort",
    "ProtocolError",
    "RemoteProtocolError",
    "TransactionCancelled",
    "UnexpectedPacket",
    "UnknownPacketType",
    "VersionMismatch",
]


class PTPIPError(Exception):
    """Base of every error raised by :mod:`ptpip`."""


class ProtocolError(PTPIPError):
    """A violation of the PTP-IP or PTP protocol."""


class LocalProtocolError(ProtocolError, ValueError):
    """Our side was asked to do something the protocol forbids (API misuse)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids.

    :ivar fail_reason: the Init Fail reason to answer with during connection
        establishment, or ``None`` where none applies.
    :ivar response_code: the PTP response code to answer with inside a
        transaction, or ``None`` where none applies.
    """

    fail_reason: FailReason | None = FailReason.UNSPECIFIED
    response_code: ResponseCode | None = None

    def __init__(self, message: str, *, fail_reason: FailReason | None = None,
                 response_code: ResponseCode | None = None) -> None:
        super().__init__(message)
        if fail_reason is not None:
            self.fail_reason = fail_reason
        if response_code is not None:
            self.response_code = response_code


class FramingError(RemoteProtocolError):
    """The byte stream cannot be cut into PTP-IP packets; the connection is unusable."""


class PacketTooShort(FramingError):
    """A declared length is below the 8-byte header or the packet type's fixed fields."""


class PacketTooLarge(FramingError):
    """A non-data packet declares a length above the configured maximum."""


class UnknownPacketType(FramingError):
    """The header names a packet type that PTP-IP does not define."""


class MalformedPacket(FramingError):
    """A packet's fields do not fit its declared length (stray bytes, bad alignment)."""


class UnexpectedPacket(RemoteProtocolError):
    """A well-formed packet that is not legal in the connection's current state."""


class VersionMismatch(RemoteProtocolError):
    """The peer speaks a protocol version with another major number (spec 5.5)."""


class OperationError(RemoteProtocolError):
    """Raised by a device to answer a PTP response code other than OK.

    :ivar params: the response's parameters (usually none).
    """

    fail_reason = None

    def __init__(self, code: int, message: str = "", params: tuple[int, ...] = ()) -> None:
        super().__init__(message or code_name(code), response_code=code)  # type: ignore[arg-type]
        self.params = params


class InitFailed(PTPIPError):
    """The responder refused the connection with an Init Fail packet.

    :ivar reason: the :class:`~ptpip.wire.constants.FailReason` (or raw integer).
    """

    def __init__(self, reason: int) -> None:
        self.reason = reason
        try:
            name = FailReason(reason).name
        except ValueError:
            name = f"reason 0x{reason:08X}"
        super().__init__(f"responder refused the connection: {name}")


class ConnectionClosed(PTPIPError):
    """The PTP-IP connection was closed before the request could complete."""


class TransactionCancelled(PTPIPError):
    """A transaction was cancelled (by us or by the responder)."""


class PTPResponseError(PTPIPError):
    """A transaction ended with a response code other than OK.

    :ivar code: the response code; :ivar response: the whole response.
    """

    def __init__(self, code: int, response: object = None, operation: int | None = None) -> None:
        self.code = code
        self.response = response
        self.operation = operation
        where = f" to {code_name(operation)}" if operation is not None else ""
        super().__init__(f"camera answered {code_name(code)} (0x{code:04X}){where}")
