"""What a camera personality is: DeviceInfo, vendor operations, properties and event flow.

A :class:`Profile` is data (the strings and code sets of DeviceInfo, the vendor
properties) plus a :class:`VendorSession` class whose handlers answer the vendor
operations of one PTP session. The :class:`~ptpip.devices.camera.Camera` asks its
profile, never the transport: a personality is a device, not a branch in the responder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..wire.constants import EventCode, ObjectFormat
from ..wire.constants import OperationCode as Op
from ..wire.datasets import ObjectInfo
from ..wire.errors import OperationError
from .properties import Property, standard_properties, stream_properties

if TYPE_CHECKING:
    from .camera import Camera, CameraSession

#: The events a generic camera announces.
STANDARD_EVENTS = (EventCode.ObjectAdded, EventCode.ObjectRemoved, EventCode.DevicePropChanged,
                   EventCode.StoreFull, EventCode.CaptureComplete)


class VendorSession:
    """The vendor half of one PTP session: extra handlers and where events go.

    :meth:`handlers` adds (or replaces) operation handlers of the
    :class:`~ptpip.devices.camera.CameraSession`; a handler receives the five
    parameters (and first the ``IIncomingData`` for the codes in :attr:`data_out`).
    :meth:`event` sees every event the camera raises for the session; returning True
    keeps it from the PTP-IP event channel (vendors that queue events for a GetEvent
    operation of their own).
    """

    #: Vendor operations that carry a data-out phase.
    data_out: frozenset[int] = frozenset()

    def __init__(self, session: CameraSession) -> None:
        self.session = session
        self.camera: Camera = session.camera

    def handlers(self) -> dict[int, Callable[..., Any]]:
        return {}

    def event(self, code: int, params: tuple[int, ...], transaction_id: int) -> bool:
        return False

    def opened(self) -> None:
        """OpenSession succeeded."""

    def closed(self) -> None:
        """The session ended (CloseSession or the connection went away)."""


@dataclass
class Profile:
    """A camera personality. The generic profile is this class as it is."""

    name: str = "generic"
    manufacturer: str = "Twisted PTP-IP"
    model: str = "Virtual Camera"
    device_version: str = "1.0"
    serial_number: str = "0000000001"
    vendor_extension_id: int = 0
    vendor_extension_version: int = 0
    vendor_extension_desc: str = ""
    #: The model name gphoto2 is given with --camera for this personality.
    gphoto2_model: str = "PTP/IP Camera"
    #: What the profile is, in a line (``ptpip-responder --profile help``).
    summary: str = "a standard PTP camera (ISO 15740) with no vendor extension"
    #: Where captured pictures land on the card ("" the root, as the generic camera does).
    capture_folder: str = ""
    vendor_events: tuple[int, ...] = ()
    #: Standard operations this maker's cameras do not offer (their driver would take them).
    hidden_operations: frozenset[int] = frozenset()
    #: Makes the vendor properties (each call a fresh set).
    vendor_properties: Callable[[], list[Property]] = field(default=list)
    session_class: type[VendorSession] = VendorSession
    #: Live view as PTP 1.1 streams (GetStreamInfo 0x1024, GetStream 0x1025, the stream
    #: properties 0x5020/0x5021): the standard camera's path; a vendor's has its own.
    streams: bool = True

    def operations(self, camera: Camera) -> Iterable[int]:
        """Operations to advertise besides the standard PTP 1.0 ones."""
        if self.streams and camera.live_view is not None:
            return (Op.GetStreamInfo, Op.GetStream)
        return ()

    def make_properties(self) -> list[Property]:
        """The camera's properties: the standard ones (with the stream properties when
        the profile has streams) and the vendor's."""
        return standard_properties() + (stream_properties() if self.streams else []) + self.vendor_properties()

    def events(self) -> tuple[int, ...]:
        return STANDARD_EVENTS + self.vendor_events

    def advertised_properties(self, camera: Camera) -> list[int]:
        """The property codes of DeviceInfo (the default: all of them)."""
        return list(camera.properties.supported())

    def newSession(self, session: CameraSession) -> VendorSession:
        return self.session_class(session)


class HeldObject:
    """A picture held in the camera's memory (Canon EOS or Nikon SDRAM), not on a card.

    It has a handle outside the store's range and lives until downloaded or deleted.
    """

    def __init__(self, handle: int, name: str, data: bytes, storage_id: int = 0, parent: int = 0) -> None:
        self.handle = handle
        self.name = name
        self.data = data
        self.info = ObjectInfo(storage_id=storage_id, object_format=ObjectFormat.EXIF_JPEG,
                               object_compressed_size=len(data), parent_object=parent, filename=name)

    def respond(self, code: int, params: tuple[int, ...]) -> Any:
        """The answer to GetObjectInfo, GetObject or GetPartialObject(offset, max) on it."""
        from ..interfaces import Response
        from ..wire.constants import OperationCode as Op
        if code == Op.GetObjectInfo:
            return Response(data=self.info.encode())
        if code == Op.GetObject:
            return Response(data=self.data)
        chunk = self.slice(params[0], params[1])
        return Response(params=(len(chunk),), data=chunk)

    def slice(self, offset: int, length: int) -> bytes:
        """Bytes from *offset*; never an empty piece (libgphoto2 would ask again for ever)."""
        if offset >= len(self.data) and self.data:
            from ..wire.constants import ResponseCode
            raise OperationError(ResponseCode.InvalidParameter, f"offset {offset} beyond {len(self.data)} bytes")
        return self.data[offset:offset + length]
