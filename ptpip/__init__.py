"""PTP-IP (ISO 15740 over TCP/IP, CIPA DC-X005) for Twisted: responder and initiator.

The layers, from the ground up:

- :mod:`ptpip.wire`: the pure codec and state (packets, framing, datasets, the
  transaction machine); no Twisted;
- :mod:`ptpip.interfaces`: the device contract; :mod:`ptpip.streams`: data sources
  and sinks with backpressure;
- :mod:`ptpip.devices`: the virtual camera (store, properties, capture, policy);
- the glue: :mod:`ptpip.responder` (with :mod:`ptpip.dataphase` and
  :mod:`ptpip.sendfile`), :mod:`ptpip.initiator` and :mod:`ptpip.client`;
- the front ends: :mod:`ptpip.tap` (``twistd ptpip-responder``), :mod:`ptpip.cli`
  (the ``ptpip`` command), :mod:`ptpip.discovery` (DNS-SD).
"""
