"""Fuji's PTP/IP framing (ptpip/wire/fuji.py): known answers from libgphoto2's
``fujiptpip.c``, packets split anywhere, and what a peer cannot make us do."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptpip.wire import fuji
from ptpip.wire.errors import RemoteProtocolError

GUID = bytes(range(16))


def test_init_request_is_the_82_bytes_libgphoto2_sends():
    raw = fuji.InitRequest(GUID, "vm").encode()
    assert len(raw) == 82
    assert raw[:12] == bytes.fromhex("52000000" "01000000" "f2e4538f")
    assert raw[12:28] == GUID and raw[28:34] == b"v\0m\0\0\0" and raw[34:] == bytes(48)
    assert fuji.decode(raw) == fuji.InitRequest(GUID, "vm")
    long = fuji.InitRequest(GUID, "x" * 40).encode()
    assert len(long) == 82 and fuji.decode(long).host_name == "x" * 26     # 26 characters at most


def test_init_ack_ends_its_name_with_a_nul():
    raw = fuji.InitAck(3, GUID, "X-T4").encode()
    length, kind, number = struct.unpack_from("<III", raw)
    assert (length, kind, number) == (len(raw), 2, 3)
    assert raw[12:28] == GUID and raw[28:] == "X-T4".encode("utf-16-le") + b"\0\0"
    assert fuji.decode(raw, "initiator") == fuji.InitAck(3, GUID, "X-T4")
    # A responder takes an ack-shaped packet for a data container, not for an ack.
    assert isinstance(fuji.decode(raw), fuji.Container)
    assert fuji.InitFail(1).encode() == bytes.fromhex("0c000000" "05000000" "01000000")


def test_containers():
    # GetObjectHandles(0xFFFFFFFF, 0, 0) as fujiptpip.c sends it: type 1, code, tid, 3 params
    cmd = fuji.Container(fuji.COMMAND, 0x1007, 7, struct.pack("<III", 0xFFFFFFFF, 0, 0))
    raw = cmd.encode()
    assert raw[:12] == bytes.fromhex("18000000" "0100" "0710" "07000000")
    assert fuji.command_params(fuji.decode(raw)) == (0xFFFFFFFF, 0, 0)
    resp = fuji.Container(fuji.RESPONSE, 0x2001, 7, params=(5,)).encode()
    assert resp == bytes.fromhex("10000000" "0300" "0120" "07000000" "05000000")
    assert fuji.container_header(fuji.DATA, 0x1009, 9, 100) == bytes.fromhex("70000000" "0200" "0910" "09000000")
    with pytest.raises(RemoteProtocolError):
        fuji.command_params(fuji.Container(fuji.COMMAND, 0x1001, 1, b"\0" * 24))        # six params
    with pytest.raises(RemoteProtocolError):
        fuji.decode(fuji.Container(9, 0x1001, 1).encode())                               # no such type


@given(st.lists(st.tuples(st.sampled_from([fuji.COMMAND, fuji.DATA, fuji.RESPONSE, fuji.EVENT]),
                          st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFE), st.binary(max_size=64)),
                max_size=8),
       st.lists(st.integers(1, 40), max_size=20))
def test_decoder_reads_packets_split_anywhere(packets, cuts):
    stream = fuji.InitRequest(GUID, "host").encode() + fuji.InitRequest(GUID, "host").encode()
    expected: list = [fuji.InitRequest(GUID, "host")] * 2
    for kind, code, tid, payload in packets:
        c = fuji.Container(kind, code, tid, payload)
        if (len(payload) + 12, kind, code, tid & 0xFFFFFFFF) == (82, 1, 0, fuji.INIT_MAGIC):
            continue
        stream += c.encode()
        expected.append(c)
    d = fuji.FujiDecoder()
    got, pos = [], 0
    for cut in cuts:
        got += d.feed(stream[pos:pos + cut])
        pos += cut
    got += d.feed(stream[pos:])
    assert got == expected and d.pending == 0


def test_decoder_refuses_what_it_would_have_to_hold_without_limit():
    d = fuji.FujiDecoder(max_packet=1024)
    with pytest.raises(RemoteProtocolError):
        d.feed(struct.pack("<IHHI", 1 << 30, 2, 0x1016, 1))
    with pytest.raises(RemoteProtocolError):
        fuji.FujiDecoder().feed(struct.pack("<II", 4, 1))                                 # shorter than a header
