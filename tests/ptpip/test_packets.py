"""The PTP-IP codec: known-answer vectors from the spec's figures, streaming
parsing, every malformed class with its exact error, and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptpip.constants import PROTOCOL_VERSION, PacketType
from ptpip.errors import (
    LocalProtocolError,
    MalformedPacket,
    PacketTooLarge,
    PacketTooShort,
    UnknownPacketType,
)
from ptpip.framing import NEED_DATA, PacketParser
from ptpip.packets import (
    Cancel,
    Data,
    EndData,
    Event,
    InitCommandAck,
    InitCommandRequest,
    InitEventAck,
    InitEventRequest,
    InitFail,
    OperationRequest,
    OperationResponse,
    ProbeRequest,
    ProbeResponse,
    StartData,
    decode_name_and_version,
    decode_packet,
    encode_friendly_name,
)

GUID = bytes(range(16))

# (packet, its bytes as laid out in the figures of spec 2.3, values from REFERENCE.md)
VECTORS = [
    (InitCommandRequest(GUID, "AB", PROTOCOL_VERSION),      # Figure 7
     "22000000" "01000000" "000102030405060708090a0b0c0d0e0f" "410042000000" "00000100"),
    (InitCommandAck(1, b"\xff" * 16, "Cam", PROTOCOL_VERSION),  # Figure 8
     "28000000" "02000000" "01000000" + "ff" * 16 + "430061006d000000" "00000100"),
    (InitEventRequest(0x12345678), "0c000000" "03000000" "78563412"),  # Figure 9
    (InitEventAck(), "08000000" "04000000"),                          # Figure 10
    (InitFail(2), "0c000000" "05000000" "02000000"),                  # Figure 11
    (OperationRequest(1, 0x1002, 0, (1,)),                            # Figure 12
     "16000000" "06000000" "01000000" "0210" "00000000" "01000000"),
    (OperationRequest(1, 0x1001, 0), "12000000" "06000000" "01000000" "0110" "00000000"),
    (OperationRequest(2, 0x100C, 7, (0x10001, 0, 0, 0, 5)),
     "26000000" "06000000" "02000000" "0c10" "07000000" "01000100" "00000000" "00000000" "00000000"
     "05000000"),
    (OperationResponse(0x2001, 3), "0e000000" "07000000" "0120" "03000000"),  # Figure 13
    (OperationResponse(0x2001, 3, (1, 2, 3, 4, 5)),
     "22000000" "07000000" "0120" "03000000" "01000000" "02000000" "03000000" "04000000" "05000000"),
    (Event(0x4002, 0xFFFFFFFF, (5,)), "12000000" "08000000" "0240" "ffffffff" "05000000"),  # Figure 14
    (Event(0x400D, 9), "0e000000" "08000000" "0d40" "09000000"),
    (StartData(1, 10), "14000000" "09000000" "01000000" "0a00000000000000"),  # Figure 15
    (StartData(1, 0xFFFFFFFFFFFFFFFF), "14000000" "09000000" "01000000" "ffffffffffffffff"),
    (Data(1, b"abc"), "0f000000" "0a000000" "01000000" "616263"),             # Figure 16
    (EndData(1, b"xyz"), "0f000000" "0c000000" "01000000" "78797a"),          # Figure 17
    (EndData(4), "0c000000" "0c000000" "04000000"),
    (Cancel(5), "0c000000" "0b000000" "05000000"),                            # Figure 18
    (ProbeRequest(), "08000000" "0d000000"),                                  # Figure 19
    (ProbeResponse(), "08000000" "0e000000"),                                 # Figure 20
]
IDS = [f"{type(p).__name__}-{i}" for i, (p, _) in enumerate(VECTORS)]


def coalesce(events: list) -> list:
    """Join the pieces of one streamed Data/End Data packet back into one value."""
    out: list = []
    for e in events:
        if isinstance(e, (Data, EndData)) and out and type(out[-1]) is Data \
                and out[-1].transaction_id == e.transaction_id:
            out[-1] = type(e)(e.transaction_id, out[-1].payload + e.payload)
        else:
            out.append(e)
    return out


def feed(parser: PacketParser, data: bytes, step: int | None = None) -> list:
    events = []
    step = step or len(data) or 1
    for i in range(0, len(data), step):
        parser.receive_data(data[i:i + step])
        events.extend(parser.events())
    return events


@pytest.mark.parametrize("packet,hexdata", VECTORS, ids=IDS)
def test_known_answer_encode(packet, hexdata):
    """Each packet encodes to the bytes of its figure."""
    assert packet.encode().hex() == hexdata


@pytest.mark.parametrize("packet,hexdata", VECTORS, ids=IDS)
def test_known_answer_decode_whole(packet, hexdata):
    """The figure's bytes fed in one chunk decode to exactly that packet."""
    assert decode_packet(bytes.fromhex(hexdata)) == packet
    p = PacketParser()
    assert feed(p, bytes.fromhex(hexdata)) == [packet]
    assert p.pending == 0 and not p.in_packet


@pytest.mark.parametrize("packet,hexdata", VECTORS, ids=IDS)
def test_known_answer_byte_by_byte(packet, hexdata):
    """Fed one byte at a time, the same packet comes out (data payloads in pieces)."""
    p = PacketParser()
    events = feed(p, bytes.fromhex(hexdata), step=1)
    assert coalesce(events) == [packet]
    assert p.pending == 0


@pytest.mark.parametrize("packet,hexdata", VECTORS, ids=IDS)
def test_known_answer_with_trailing_bytes(packet, hexdata):
    """Bytes after the packet stay buffered as the start of the next one."""
    p = PacketParser()
    trailing = bytes.fromhex("0c000000" "03000000" "090000")   # 11 of the 12 bytes of an Init Event Request
    events = feed(p, bytes.fromhex(hexdata) + trailing)
    assert coalesce(events) == [packet]
    # The next header was already checked; its first 3 body bytes wait for the 4th.
    assert p.in_packet and p.pending == len(trailing) - 8
    p.receive_data(b"\x00")
    assert list(p.events()) == [InitEventRequest(9)]


def test_several_packets_in_one_chunk():
    """Every packet of one chunk is returned in order."""
    raw = b"".join(bytes.fromhex(h) for _, h in VECTORS)
    assert feed(PacketParser(), raw) == [p for p, _ in VECTORS]


def test_split_everywhere():
    """Cutting the stream at every possible point yields the same packets."""
    raw = b"".join(bytes.fromhex(h) for _, h in VECTORS[:8])
    expected = [p for p, _ in VECTORS[:8]]
    for cut in range(1, len(raw)):
        p = PacketParser()
        events = feed(p, raw[:cut]) + feed(p, raw[cut:])
        assert events == expected, cut


def test_data_payload_is_handed_on_as_it_arrives():
    """A Data packet announcing 4 GiB yields pieces as bytes come; nothing is allocated up front."""
    p = PacketParser()
    header = (8 + 4 + 0xFFFFFFF0).to_bytes(4, "little") + (10).to_bytes(4, "little") + (7).to_bytes(4, "little")
    p.receive_data(header)
    assert p.next_event() is NEED_DATA
    p.receive_data(b"x" * 1000)
    assert list(p.events()) == [Data(7, b"x" * 1000)]
    assert p.pending == 0
    p.receive_data(b"y" * 10)
    assert list(p.events()) == [Data(7, b"y" * 10)]


def test_end_data_last_piece_marks_the_end():
    """Only the final piece of an End Data packet is an EndData value."""
    p = PacketParser()
    raw = EndData(3, b"0123456789").encode()
    events = feed(p, raw[:16]) + feed(p, raw[16:])
    assert events == [Data(3, b"0123"), EndData(3, b"456789")]


@pytest.mark.parametrize("hexdata,error,message", [
    ("07000000" "01000000", PacketTooShort, "below the 8-byte header"),
    ("00000000" "0d000000", PacketTooShort, "below the 8-byte header"),
    ("08000000" "00000000", UnknownPacketType, "0x00000000"),
    ("08000000" "0f000000", UnknownPacketType, "0x0000000F"),
    ("08000000" "ffffffff", UnknownPacketType, "0xFFFFFFFF"),
    ("d0070000" "01000000", PacketTooLarge, "2000 bytes exceeds the limit of 1024"),
    ("ffffffff" "06000000", PacketTooLarge, "exceeds the limit"),
    ("0a000000" "03000000", PacketTooShort, "cannot hold its fixed fields (12 bytes)"),
    ("13000000" "09000000", PacketTooShort, "cannot hold its fixed fields (20 bytes)"),
    ("11000000" "06000000", PacketTooShort, "cannot hold its fixed fields (18 bytes)"),
    ("0d000000" "07000000", PacketTooShort, "cannot hold its fixed fields (14 bytes)"),
    ("0b000000" "0a000000", PacketTooShort, "cannot hold its fixed fields (12 bytes)"),
    ("0b000000" "0c000000", PacketTooShort, "cannot hold its fixed fields (12 bytes)"),
    ("17000000" "01000000", PacketTooShort, "cannot hold its fixed fields (24 bytes)"),
    ("1b000000" "02000000", PacketTooShort, "cannot hold its fixed fields (28 bytes)"),
    ("0c000000" "04000000", MalformedPacket, "longer than its largest form (8 bytes)"),
    ("10000000" "0b000000", MalformedPacket, "longer than its largest form (12 bytes)"),
    ("0c000000" "0d000000", MalformedPacket, "longer than its largest form (8 bytes)"),
    ("2a000000" "06000000", MalformedPacket, "longer than its largest form (38 bytes)"),
    ("1e000000" "08000000", MalformedPacket, "longer than its largest form (26 bytes)"),
])
def test_header_errors_are_raised_as_soon_as_the_header_arrives(hexdata, error, message):
    """Each malformed header raises its own error with the 8 header bytes alone."""
    p = PacketParser()
    p.receive_data(bytes.fromhex(hexdata))
    with pytest.raises(error) as e:
        p.next_event()
    assert message in str(e.value)
    assert e.value.fail_reason is not None


@pytest.mark.parametrize("hexdata,message", [
    ("17000000" "06000000" "01000000" "0210" "00000000" "0100000001", "not a whole number"),
    ("13000000" "07000000" "0120" "00000000" "0100000001", "not a whole number"),
])
def test_parameter_bytes_must_be_whole(hexdata, message):
    """Parameter bytes that are not a multiple of 4 are malformed."""
    with pytest.raises(MalformedPacket, match=message):
        decode_packet(bytes.fromhex(hexdata))


def test_parser_stays_broken_after_an_error():
    """After a framing error the stream is unusable: every later call raises the same error."""
    p = PacketParser()
    p.receive_data(bytes.fromhex("08000000" "63000000"))
    with pytest.raises(UnknownPacketType) as first:
        p.next_event()
    p.receive_data(ProbeRequest().encode())
    with pytest.raises(UnknownPacketType) as second:
        p.next_event()
    assert first.value is second.value


def test_max_packet_size_is_configurable():
    p = PacketParser(max_packet_size=64)
    p.receive_data(InitCommandRequest(GUID, "x" * 30).encode()[:8])
    with pytest.raises(PacketTooLarge):
        p.next_event()


def test_truncated_packet_is_too_short():
    with pytest.raises(PacketTooShort, match="truncated"):
        decode_packet(OperationRequest(1, 0x1001, 0).encode()[:-1])


# -- friendly names ---------------------------------------------------------------

def test_friendly_name_encoding():
    """UTF-16LE with a NUL; 39 units plus the NUL is the longest allowed."""
    assert encode_friendly_name("") == b"\x00\x00"
    assert encode_friendly_name("é") == b"\xe9\x00\x00\x00"
    assert len(encode_friendly_name("x" * 39)) == 80
    with pytest.raises(LocalProtocolError, match="at most 39 UTF-16 units"):
        encode_friendly_name("x" * 40)
    with pytest.raises(LocalProtocolError, match="at most 39"):
        encode_friendly_name("😀" * 20)   # 40 units in surrogate pairs


@pytest.mark.parametrize("raw,name,version", [
    ("410042000000" "00000100", "AB", 0x10000),           # as specified
    ("41004200" "00000100", "AB", 0x10000),               # NUL missing
    ("410042000000", "AB", 0x10000),                      # version missing
    ("41004200", "AB", 0x10000),                          # both missing
    ("4100420000000000" "00000100", "AB", 0x10000),       # NUL-padded name
    ("0000" "02000100", "", 0x10002),                     # empty name, version 1.2
    ("", "", 0x10000),                                    # nothing at all
])
def test_lenient_name_and_version(raw, name, version):
    """Deployed initiators omit the NUL or the version: both are accepted."""
    assert decode_name_and_version(bytes.fromhex(raw)) == (name, version)


def test_init_request_without_version_decodes():
    raw = bytes.fromhex("1e000000" "01000000") + GUID + "AB".encode("utf-16-le") + b"\x00\x00"
    assert decode_packet(raw) == InitCommandRequest(GUID, "AB", PROTOCOL_VERSION)


def test_stray_bytes_after_the_name_are_malformed():
    with pytest.raises(MalformedPacket, match="stray bytes"):
        decode_name_and_version(bytes.fromhex("41000000" "01"))


# -- validation on construction ---------------------------------------------------

@pytest.mark.parametrize("make,message", [
    (lambda: OperationRequest(1, 0x1001, 0, (1, 2, 3, 4, 5, 6)), "at most 5 parameters"),
    (lambda: Event(0x4002, 0, (1, 2, 3, 4)), "at most 3 parameters"),
    (lambda: OperationRequest(1, 0x10000, 0), "16-bit"),
    (lambda: OperationResponse(0x2001, -1), "32-bit"),
    (lambda: InitCommandRequest(b"short"), "16 bytes"),
    (lambda: StartData(1, 1 << 64), "64-bit"),
    (lambda: Cancel(1 << 32), "32-bit"),
])
def test_invalid_values_cannot_be_built(make, message):
    with pytest.raises(LocalProtocolError, match=message):
        make()


# -- round trips ------------------------------------------------------------------

u32 = st.integers(0, 0xFFFFFFFF)
u16 = st.integers(0, 0xFFFF)
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=19)
packets = st.one_of(
    st.builds(InitCommandRequest, st.binary(min_size=16, max_size=16), names, u32),
    st.builds(InitCommandAck, u32, st.binary(min_size=16, max_size=16), names, u32),
    st.builds(InitEventRequest, u32),
    st.just(InitEventAck()),
    st.builds(InitFail, u32),
    st.builds(OperationRequest, u32, u16, u32, st.lists(u32, max_size=5).map(tuple)),
    st.builds(OperationResponse, u16, u32, st.lists(u32, max_size=5).map(tuple)),
    st.builds(Event, u16, u32, st.lists(u32, max_size=3).map(tuple)),
    st.builds(StartData, u32, st.integers(0, (1 << 64) - 1)),
    st.builds(Data, u32, st.binary(max_size=300)),
    st.builds(EndData, u32, st.binary(max_size=300)),
    st.builds(Cancel, u32),
    st.just(ProbeRequest()),
    st.just(ProbeResponse()),
)


@settings(deadline=None, max_examples=400)
@given(packets)
def test_round_trip(packet):
    """decode(encode(p)) == p for every packet type."""
    if isinstance(packet, (InitCommandRequest, InitCommandAck)) and len(packet.friendly_name.encode("utf-16-le")) > 78:
        return
    assert decode_packet(packet.encode()) == packet


@settings(deadline=None, max_examples=200)
@given(st.lists(packets, min_size=1, max_size=6), st.data())
def test_stream_round_trip_with_random_cuts(seq, data):
    """A stream of packets cut at random points parses back to the same packets."""
    seq = [p for p in seq if not isinstance(p, (Data, EndData))
           and not (isinstance(p, (InitCommandRequest, InitCommandAck))
                    and len(p.friendly_name.encode("utf-16-le")) > 78)]
    raw = b"".join(p.encode() for p in seq)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    p = PacketParser()
    events = []
    last = 0
    for c in cuts + [len(raw)]:
        p.receive_data(raw[last:c])
        events.extend(p.events())
        last = c
    assert events == seq


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_but_protocol_errors(raw):
    """Arbitrary bytes produce packets or a PTP-IP protocol error, never another exception."""
    from ptpip.errors import RemoteProtocolError
    p = PacketParser()
    p.receive_data(raw)
    try:
        list(p.events())
    except RemoteProtocolError:
        pass


def test_packet_types_cover_all_fourteen():
    assert {t.value for t in PacketType} == set(range(1, 15))
    assert {type(p).TYPE for p, _ in VECTORS} == set(PacketType)


def test_bulk_payload_is_handed_on_without_a_copy():
    """Once a Data header is parsed, a chunk that is all payload is passed on as is."""
    p = PacketParser()
    p.receive_data(Data(5).header(1 << 20))
    assert p.next_event() is NEED_DATA
    chunk = bytes(range(256)) * 256
    p.receive_data(chunk)
    event = p.next_event()
    assert event == Data(5, chunk) and event.payload is chunk
    # a chunk that runs past the packet is split, and the rest parsed as usual
    p2 = PacketParser()
    p2.receive_data(EndData(6).header(4))
    p2.receive_data(b"abcd" + ProbeRequest().encode())
    assert list(p2.events()) == [EndData(6, b"abcd"), ProbeRequest()]
