"""CCCP (the CamCoder Control Protocol, draft-ohta-ccc-video-00) for Twisted: server and client.

The layers, from the ground up:

- :mod:`cccp.wire`: the pure codec and state (commands and replies, the session's
  TYPE/MODE rules and login phases, TS/RTP framing, URLs); no Twisted;
- :mod:`cccp.interfaces`: the device contract;
- :mod:`cccp.devices`: a file store, a PTZ camera, a tape deck and live sources;
- the glue: :mod:`cccp.server` (with :mod:`cccp.transfers`, :mod:`cccp.data` and
  :mod:`cccp.stream`), :mod:`cccp.client`, :mod:`cccp.realm` (twisted.cred);
- :mod:`cccp.adapters`: the one place PTP-IP meets CCCP (a PTP-IP camera as a CCCP
  camera and store);
- the front ends: :mod:`cccp.tap` (``twistd cccp-server``) and :mod:`cccp.cli`.
"""
