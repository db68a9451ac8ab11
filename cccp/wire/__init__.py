"""The pure ground floor of :mod:`cccp`: text and bytes in, values out.

Nothing under ``cccp.wire`` imports Twisted or does I/O (``tests/test_layers.py``
checks it):

- :mod:`~cccp.wire.errors`: the exception taxonomy, each remote error with its reply code;
- :mod:`~cccp.wire.commands`: command lines, replies, numbers, PORT addresses, TYPE and
  MODE, the TSTA/CSTA bodies, the HELP text and the LIST line format;
- :mod:`~cccp.wire.session`: one control connection's state (login phase, working
  directory, TYPE/MODE rules, verb gating, the transfer plan) and a bounded line buffer;
- :mod:`~cccp.wire.media`: MPEG2-TS and RTP framing, PCR pacing;
- :mod:`~cccp.wire.url`: ``cccp://`` URLs.
"""
