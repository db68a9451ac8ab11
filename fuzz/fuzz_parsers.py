"""Coverage-guided fuzzing of every parser that reads bytes from a peer (atheris).

    pip install atheris
    python fuzz/fuzz_parsers.py fuzz/corpus -max_total_time=600

A crash is any exception other than the parsers' own protocol errors.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from cccp.wire.commands import (
        ReplyParser,
        format_reply,
        parse_command,
        parse_csta,
        parse_host_port,
        parse_mode,
        parse_number,
        parse_tsta,
        parse_type,
    )
    from cccp.wire.errors import CCCPError
    from cccp.wire.media import Pacer, RFC4571Framer, RTPPacket, TSFramer
    from cccp.wire.session import LineBuffer
    from ptpip.wire.datasets import DeviceInfo, DevicePropDesc, ObjectInfo, StorageInfo, unpack_value
    from ptpip.wire.errors import PTPIPError
    from ptpip.wire.framing import PacketParser
    from ptpip.wire.transaction import Channel, Role, Transactions

EXPECTED = (PTPIPError, CCCPError)


def one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, 12)
    rest = fdp.ConsumeBytes(len(data))
    try:
        if which == 0:
            p = PacketParser()
            # feed in random cuts
            i = 0
            while i < len(rest):
                n = 1 + rest[i] % 17
                p.receive_data(rest[i:i + n])
                list(p.events())
                i += n
        elif which == 1:
            for cls in (DeviceInfo, StorageInfo, ObjectInfo, DevicePropDesc):
                cls.decode(rest)
        elif which == 2:
            unpack_value(int.from_bytes(rest[:2].ljust(2, b"\0"), "little"), rest[2:])
        elif which == 3:
            parse_command(rest)
        elif which == 4:
            r = ReplyParser()
            for line in rest.decode("latin-1").split("\n"):
                r.line(line)
        elif which == 5:
            text = rest.decode("latin-1")
            for f in (parse_number, parse_host_port, parse_mode, parse_type):
                try:
                    f(text)
                except EXPECTED:
                    pass
            parse_tsta(text.split("\n") or [""])
            parse_csta(text.split("\n") or [""])
        elif which == 6:
            TSFramer().feed(rest)
        elif which == 7:
            RFC4571Framer().feed(rest)
        elif which == 8:
            RTPPacket.decode(rest)
        elif which == 9:
            Pacer().feed(rest[:len(rest) // 188 * 188])
        elif which == 10:
            # CCCP command or reply lines in random cuts: every line is bounded and whole.
            buf = LineBuffer(64)
            i = 0
            while i < len(rest):
                n = 1 + rest[i] % 23
                buf.feed(rest[i:i + n])
                while (line := buf.next_line()) is not None:
                    assert not isinstance(line, bytes) or (b"\n" not in line and len(line) <= 64)
                assert buf.pending <= 64 + n
                i += n
        elif which == 11:
            # Whatever packets arrive, on either channel, the responder's transaction
            # machine answers with events or UnexpectedPacket, and stays consistent.
            p, t = PacketParser(), Transactions(Role.RESPONDER)
            p.receive_data(rest[1:])
            for packet in p.events():
                channel = Channel.EVENT if rest[0] & 1 else Channel.COMMAND
                t.receive(packet, channel)
                if t.busy and rest[0] & 2 and not t.cancelling:
                    t.respond(0x2001)
        else:
            # A reply built from any text (a file name) is whole lines, each ending in CR LF.
            text = rest.decode("utf-8", "replace")
            out = format_reply(212, ["Status:", text, "End of status"])
            lines = out.split(b"\r\n")
            assert lines[-1] == b"" and all(b"\r" not in x and b"\n" not in x for x in lines)
            assert lines[-2].startswith(b"212 ") and all(not x.startswith(b"212 ") for x in lines[:-2])
    except EXPECTED:
        pass
    except (ValueError, IndexError) as e:
        # ValueError from int()/Decimal in text parsers is not expected either: re-raise.
        raise e


def main() -> None:
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
