"""The interfaces between the PTP-IP transport and the devices behind it.

The responder knows nothing of cameras: it hands each established PTP-IP
connection to an :class:`IResponderDevice`, which returns an
:class:`IResponderSession` that answers operations. Data-in is any
:class:`IDataSource`; data-out arrives as an :class:`IIncomingData`. A device
answers with a :class:`Response` value, or raises :class:`~ptpip.wire.errors.OperationError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import Attribute, Interface

from .wire.constants import ResponseCode


@dataclass(frozen=True)
class Response:
    """What a device answers to an operation: a code, parameters and optional data-in."""

    code: int = ResponseCode.OK
    params: tuple[int, ...] = ()
    #: Data-in: bytes, a tuple of bytes (sent one after the other, without joining them
    #: first: a header and a frame), or an :class:`IDataSource`; None for no data phase.
    data: Any = None


class IDataSource(IPushProducer):
    """A data-in payload produced into a consumer with backpressure.

    The same shape as :class:`twisted.web.iweb.IBodyProducer`: the transport
    registers the source as a streaming producer with its transport, so
    ``pauseProducing`` is called when the socket's buffer is full.
    """

    length = Attribute("Total number of bytes, or None when unknown in advance.")

    def startProducing(consumer):
        """Write all bytes to *consumer*; return a Deferred that fires when done."""

    def pauseProducing():
        """Stop writing until ``resumeProducing``."""

    def resumeProducing():
        """Continue writing."""

    def stopProducing():
        """Stop for good (the transaction was cancelled or the peer went away).

        The Deferred from ``startProducing`` need not fire afterwards.
        """


class IIncomingData(Interface):
    """The data-out phase of one transaction, as the initiator sends it."""

    length = Attribute("The total announced in Start Data, or None when 'unknown'.")

    def deliverTo(consumer):
        """Stream every byte of the phase into *consumer* (an ``IConsumer``).

        Returns a Deferred that fires with the byte count once End Data has
        arrived and the count agrees with the announced length; it fails with
        a :class:`~ptpip.wire.errors.RemoteProtocolError` carrying IncompleteTransfer
        when it does not, or with :class:`~ptpip.wire.errors.TransactionCancelled`
        or :class:`~ptpip.wire.errors.ConnectionClosed`. The consumer may pause
        the producer it is given; the connection stops reading meanwhile.
        Until this is called, the connection does not read the data.
        """

    def readAll(limit):
        """Gather the whole phase into bytes (for small datasets only).

        Returns a Deferred firing with the bytes; fails like ``deliverTo``,
        and with a RemoteProtocolError (GeneralError) beyond *limit* bytes.
        """


class IEventSink(Interface):
    """Sends PTP events to one initiator over its event connection."""

    def sendEvent(code, params=(), transaction_id=0xFFFFFFFF):
        """Queue an Event packet; never blocks, silently dropped once closed."""


class IInitiatorInfo(Interface):
    """What the responder knows of a connected initiator."""

    guid = Attribute("16-byte GUID from Init Command Request.")
    friendly_name = Attribute("The initiator's friendly name.")
    version = Attribute("The negotiated protocol version.")
    address = Attribute("The command connection's peer address (an IAddress).")
    connection_number = Attribute("The connection number the responder assigned.")


class IResponderSession(Interface):
    """The device's side of one established PTP-IP connection."""

    def handleOperation(request, incoming):
        """Answer one :class:`~ptpip.wire.packets.OperationRequest`.

        *incoming* is an :class:`IIncomingData` for data-out operations (called
        once Start Data has arrived) and None otherwise. Return (or return a
        Deferred of) a :class:`Response`; failing with a
        :class:`~ptpip.wire.errors.RemoteProtocolError` that has a ``response_code``
        (or :class:`~ptpip.wire.errors.OperationError`) answers that code, any
        other failure answers GeneralError. Answering before a data-out phase
        is complete is a responder-generated cancel: the rest is discarded.
        """

    def cancelTransaction(transaction_id):
        """The initiator cancelled *transaction_id* (spec 2.7).

        Called for the current transaction (its response is then sent by the
        transport as TransactionCancelled) and for asynchronous operations such
        as InitiateCapture, which the device ends with an event (2.7.3).
        """

    def connectionLost(reason):
        """The PTP-IP connection is gone (PTP 7.1 DeviceDisconnection)."""


class IResponderDevice(Interface):
    """A device that a PTP-IP responder serves."""

    def newSession(initiator, events):
        """A PTP-IP connection was established.

        :param initiator: an :class:`IInitiatorInfo`.
        :param events: an :class:`IEventSink` for this connection.
        :return: an :class:`IResponderSession`.
        """


class IInitiatorPolicy(Interface):
    """Decides which initiators may connect (device bonding, spec 5.3)."""

    def accept(initiator):
        """Return (or a Deferred of) True to accept *initiator* (IInitiatorInfo)."""


class IObjectStore(Interface):
    """One PTP storage: a tree of objects (files and Association folders).

    Handles are non-zero 32-bit integers, stable while the store exists and
    never reused. Methods raise :class:`~ptpip.wire.errors.OperationError` with
    the PTP response code for anything the initiator got wrong.
    """

    storage_id = Attribute("The 32-bit StorageID (physical << 16 | logical).")
    allow_format = Attribute("Whether FormatStore may erase the store (the camera then advertises it).")

    def scan(announce=True):
        """Bring the handles up to date with what changed behind the store's back (files
        added or removed in its folder); with *announce*, listeners hear ObjectAdded and
        ObjectRemoved. A store that cannot change by itself does nothing."""

    def storageInfo():
        """The current :class:`~ptpip.wire.datasets.StorageInfo` (real capacity and free space)."""

    def handles(object_format=0, parent=0):
        """Handles of the objects matching *object_format* (0 = any) under *parent*.

        *parent* 0 means every object of the store, 0xFFFFFFFF the root level,
        anything else the children of that folder (InvalidParentObject if it is none).
        """

    def objectInfo(handle):
        """The :class:`~ptpip.wire.datasets.ObjectInfo` of *handle*."""

    def open(handle):
        """A binary file object to read the object's bytes from."""

    def thumbnail(handle):
        """The thumbnail bytes of *handle* (or a Deferred of them, when they take time to
        make), or raise NoThumbnailPresent."""

    def delete(handle, object_format=0):
        """Delete *handle* (0xFFFFFFFF: every object matching *object_format*)."""

    def reserve(info, parent):
        """Accept an ObjectInfo for an upload under *parent*; return the new handle.

        Raises StoreFull when ``info.object_compressed_size`` does not fit.
        Folders (Association) are created at once.
        """

    def receive(handle):
        """An :class:`IUpload` that writes the reserved object atomically; it takes no more
        than the ObjectInfo's ObjectCompressedSize (IncompleteTransfer) and fails with
        StoreFull when the store fills up."""

    def release(handle):
        """Give back a reservation that no SendObject used (the session ended, or sent
        another ObjectInfo); does nothing for a handle that is no reservation."""

    def setProtection(handle, status):
        """Set the ProtectionStatus (0 none, 1 read-only)."""

    def format():
        """Erase every object (FormatStore)."""

    def subscribe(listener):
        """Call ``listener(event_code, handle)`` with ObjectAdded/ObjectRemoved as the store changes."""


class IUpload(Interface):
    """An object being written; it lands only on :meth:`commit`."""

    def write(data):
        """Append bytes (an ``IConsumer`` method)."""

    def commit():
        """Make the object visible atomically; return its handle."""

    def abort():
        """Throw the partial object away; nothing is left behind."""


class IDeviceProperties(Interface):
    """The device properties of a camera (PTP clause 13)."""

    def supported():
        """The property codes, in DeviceInfo order."""

    def describe(code):
        """The :class:`~ptpip.wire.datasets.DevicePropDesc` of *code* (DevicePropNotSupported otherwise)."""

    def get(code):
        """The current value of *code*."""

    def set(code, value):
        """Set *code*; InvalidDevicePropValue for a value the form does not allow,
        AccessDenied for a read-only property."""

    def reset(code):
        """Back to the default (0xFFFFFFFF: every property)."""

    def subscribe(listener):
        """Call ``listener(code)`` whenever a value changes."""


class ICaptureSource(Interface):
    """Makes new pictures for InitiateCapture."""

    def capture(object_format):
        """Return (or a Deferred of) ``(filename, data_bytes)`` for a new picture."""


class ILiveViewSource(Interface):
    """What the camera's viewfinder shows, one frame at a time (live view)."""

    def frame():
        """A Deferred firing with the next frame, a JPEG (baseline JFIF, no EXIF thumbnail)."""
