"""The virtual camera behind the responder, below the glue.

Everything here implements :mod:`ptpip.interfaces` and imports only
:mod:`ptpip.wire`, :mod:`ptpip.interfaces` and the data sources of
:mod:`ptpip.streams`, never the responder or the initiator
(``tests/test_layers.py`` checks it):

- :mod:`~ptpip.devices.camera`: :class:`~ptpip.devices.camera.Camera`, PTP session
  semantics and the operations, over a store, properties and a capture source;
- :mod:`~ptpip.devices.filestore`: a folder as a PTP storage;
- :mod:`~ptpip.devices.properties`: device properties with their forms;
- :mod:`~ptpip.devices.capture`: new pictures for InitiateCapture;
- :mod:`~ptpip.devices.policy`: which initiators may connect (allow lists, pairing);
- :mod:`~ptpip.devices.profiles`: camera personalities by name (``--profile``), made of
  :mod:`~ptpip.devices.personality` (what a personality is), :mod:`~ptpip.devices.canon_eos`,
  :mod:`~ptpip.devices.nikon` and :mod:`~ptpip.devices.fuji`.
"""
