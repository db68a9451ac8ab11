"""Coverage-guided fuzzing of every parser that reads bytes from a peer (atheris).

    pip install atheris
    python fuzz/fuzz_parsers.py fuzz/corpus -max_total_time=600

A crash is any exception other than the parsers' own protocol errors.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from cccp.commands import (
        ReplyParser,
        parse_command,
        parse_csta,
        parse_host_port,
        parse_mode,
        parse_number,
        parse_tsta,
        parse_type,
    )
    from cccp.errors import CCCPError
    from cccp.media import Pacer, RFC4571Framer, RTPPacket, TSFramer
    from ptpip.datasets import DeviceInfo, DevicePropDesc, ObjectInfo, StorageInfo, unpack_value
    from ptpip.errors import PTPIPError
    from ptpip.framing import PacketParser

EXPECTED = (PTPIPError, CCCPError)


def one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, 9)
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
        else:
            Pacer().feed(rest[:len(rest) // 188 * 188])
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
