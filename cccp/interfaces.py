"""The interfaces between the CCCP server and the devices it controls.

A CCCP server fronts up to three things (draft section 1): a media store
(files, tapes in an archive, input connectors or TV channels), a tape deck,
and a camera. Each is a ``zope.interface`` provider; the server never knows
what is behind it. Methods may return Deferreds.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from zope.interface import Attribute, Interface


class ICamera(Interface):
    """A camera whose view is controlled by IRIS, SENS, ROLL, PAN, TILT, ZOOM,
    HORI, VERT, DEPT and FOCU (draft section 5)."""

    def controls():
        """The supported control names in CSTA order: commutative optics first,
        then rotations and translations in the order they are applied."""

    def status(name):
        """``(minimum, current, maximum)`` of control *name* as Decimals."""

    def control(name, number):
        """Apply a :class:`~cccp.wire.commands.Number` (absolute, relative or a small
        step) to control *name*; return (or a Deferred of) the new current value.
        Raise :class:`~cccp.wire.errors.NotImplementedHere` for an unsupported control."""


class ITapeDeck(Interface):
    """A device with a notion of tape position (draft section 4)."""

    def commands():
        """``{name: (min, max) or None}`` for the supported commands among PLAY,
        PAUS, RECO and FF; the range is that of the position argument."""

    def state():
        """``(operation, position)``: PLAY, RECO, FF or PAUS, and the position in seconds."""

    def play(stop=None, speed=None):
        """Start playing; *stop* is an absolute position or None. Return (or a
        Deferred of) the speed used, after the device's limits (a Decimal), or None
        when the command ended at once or the device does not say."""

    def record(stop=None, speed=None):
        """Start recording; returns like :meth:`play`."""

    def fastForward(stop=None, speed=None):
        """Move forward (or backward with a negative speed); returns like :meth:`play`."""

    def pause():
        """Stop at the current position."""


class ITapeMedia(Interface):
    """A medium being sent that is a tape (``/tape``, or a stored clip RETRieved in
    ``TYPE I M``): the tape commands of the session that RETRieves it move it, and TSTA
    reports its position from what is sent (draft section 1: a file name may stand for
    a tape)."""

    def tapeDeck():
        """The :class:`ITapeDeck` that moves it (or a Deferred of it)."""

    def tapePosition():
        """The tape position (seconds, a Decimal) of the picture being sent now, or None."""


class IMediaSource(IPushProducer):
    """Bytes to send on a data connection: a stored file or a live stream.

    The same shape as ``twisted.web.iweb.IBodyProducer``.
    """

    length = Attribute("Total bytes, or None for a live stream.")
    live = Attribute(
        "True for a source that runs in real time by itself (an encoder, a camera): the "
        "sender does not pace it by its PCR, and it is never sent as a plain file.")
    rtp_input = Attribute(
        "True when the source writes RTP packets (one per write) rather than MPEG2-TS: an "
        "encoder that packetises a payload type other than 33 itself.")

    def startProducing(consumer):
        """Write into *consumer*; return a Deferred that fires when done."""

    def pauseProducing():
        """Pause."""

    def resumeProducing():
        """Resume."""

    def stopProducing():
        """Stop for good."""


class IRecording(Interface):
    """Bytes being received into the store; they land only on :meth:`commit`."""

    def write(data):
        """Append bytes."""

    def commit():
        """Make the recording visible atomically."""

    def abort():
        """Throw it away; nothing is left behind."""


class IMediaStore(Interface):
    """Named media under a root, addressed by absolute virtual paths (``/a/b``)."""

    writable = Attribute("Whether STOR is possible at all.")

    def isdir(path):
        """True if *path* names a folder."""

    def listdir(path):
        """The :class:`~cccp.devices.Entry` values of folder *path* (or of one file)."""

    def stat(path):
        """The :class:`~cccp.devices.Entry` of *path*; FileUnavailable if absent."""

    def open(path, offset=0, payload_type=33):
        """An :class:`IMediaSource` for the medium at *path*, from byte *offset*, sent
        as RTP *payload_type* (33: MPEG2-TS, what every stored clip is). Raise
        :class:`~cccp.wire.errors.ParameterNotImplemented` for a payload type the
        medium cannot be sent as, :class:`~cccp.wire.errors.FileUnavailable` when
        there is none."""

    def receive(path):
        """An :class:`IRecording` that will land at *path*."""
