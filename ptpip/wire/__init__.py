"""The pure ground floor of :mod:`ptpip`: bytes and packets in, typed values and events out.

Nothing under ``ptpip.wire`` imports Twisted or does I/O (``tests/test_layers.py``
checks it):

- :mod:`~ptpip.wire.constants`: the code values of PTP-IP and PTP;
- :mod:`~ptpip.wire.errors`: the exception taxonomy (local and remote errors, the
  Init Fail reason or PTP response code that answers a remote one);
- :mod:`~ptpip.wire.packets`: the fourteen PTP-IP packets as frozen values;
- :mod:`~ptpip.wire.framing`: an incremental parser that cuts a byte stream into packets;
- :mod:`~ptpip.wire.datasets`: PTP datasets (DeviceInfo, ObjectInfo, ...) and values;
- :mod:`~ptpip.wire.transaction`: the one transaction machine both roles drive.
"""
