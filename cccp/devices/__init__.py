"""Virtual devices behind the CCCP interfaces, below the glue.

Everything here implements :mod:`cccp.interfaces` and imports only
:mod:`cccp.wire`, :mod:`cccp.interfaces` and the UDP endpoint of
:mod:`cccp.stream` (for an encoder's RTP), never the server or the client
(``tests/test_layers.py`` checks it):

- :mod:`~cccp.devices.store`: a folder of media (:class:`FileMediaStore`);
- :mod:`~cccp.devices.camera`: a pan/tilt/zoom camera (:class:`VirtualCamera`);
- :mod:`~cccp.devices.deck`: a tape deck moving in real time (:class:`VirtualTapeDeck`);
- :mod:`~cccp.devices.live`: live sources (an encoder, a looped clip, the tape's
  output) and :class:`~cccp.devices.live.MediaLibrary`, which presents them as
  dummy file names beside a folder.
"""

from .camera import DEFAULT_AXES, Axis, VirtualCamera
from .deck import VirtualTapeDeck
from .store import RECORDING_PREFIX, Entry, FileMediaSource, FileMediaStore, FileRecording

__all__ = [
    "DEFAULT_AXES",
    "RECORDING_PREFIX",
    "Axis",
    "Entry",
    "FileMediaSource",
    "FileMediaStore",
    "FileRecording",
    "VirtualCamera",
    "VirtualTapeDeck",
]
