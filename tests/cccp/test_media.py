"""The media codec: TS framing with resync, PCR extraction and pacing, RTP, RFC 4571
framing, RFC 2250 packetisation, depacketisation with loss counting."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cccp.media import (
    NULL_PACKET,
    RTP_MP2T,
    TS_PACKET,
    Depacketizer,
    MediaFramingError,
    Pacer,
    RFC4571Framer,
    RTPPacket,
    TSFramer,
    TSPacketizer,
    aligned,
    file_bitrate,
    frame_rfc4571,
    sample_clip_path,
    ts_pcr,
    ts_pid,
)

SAMPLE = sample_clip_path()


def sample() -> bytes:
    assert SAMPLE, "the sample clip is shipped with the package"
    return open(SAMPLE, "rb").read()


def pcr_packet(pid: int, pcr: int) -> bytes:
    base, ext = divmod(pcr, 300)
    af = bytes([7, 0x10, (base >> 25) & 0xFF, (base >> 17) & 0xFF, (base >> 9) & 0xFF, (base >> 1) & 0xFF,
                ((base & 1) << 7) | 0x7E | (ext >> 8), ext & 0xFF])
    return bytes([0x47, (pid >> 8) & 0x1F, pid & 0xFF, 0x20]) + af + b"\xff" * (184 - len(af))


def test_the_sample_clip_is_valid_ts_with_pcrs():
    data = sample()
    assert aligned(data) and len(data) > 100_000
    assert 850_000 < file_bitrate(SAMPLE) < 950_000


def test_pcr_round_trip():
    pkt = pcr_packet(0x100, 123456789)
    assert ts_pid(pkt) == 0x100 and ts_pcr(pkt) == 123456789
    assert ts_pcr(NULL_PACKET) is None


def test_framer_passes_whole_packets_split_anywhere():
    data = sample()[:TS_PACKET * 50]
    f = TSFramer()
    out = b"".join(f.feed(data[i:i + 77]) for i in range(0, len(data), 77))
    assert out == data and f.skipped == 0 and f.packets == 50


def test_framer_resynchronises_on_garbage():
    data = sample()[:TS_PACKET * 40]
    f = TSFramer()
    out = f.feed(b"junk" + data[:TS_PACKET * 10] + b"\x00\x47xyz" + data[TS_PACKET * 10:])
    assert out == data and f.skipped == 9 and f.resyncs == 2


def test_framer_fails_clearly_on_a_stream_that_is_not_ts():
    with pytest.raises(MediaFramingError, match="not an MPEG2-TS stream"):
        TSFramer().feed(bytes(range(256)) * 20)


def test_pacer_interpolates_between_pcrs():
    """Packets between two PCRs 100 ms apart get evenly spaced due times."""
    p = Pacer()
    stream = pcr_packet(0x100, 0) + NULL_PACKET * 9 + pcr_packet(0x100, 2_700_000)
    out = p.feed(stream)
    times = [t for t, _ in out]
    assert times[0] == 0.0 and abs(times[-1] - 0.1) < 1e-9
    assert sum(len(d) for _, d in out) == len(stream)
    assert abs(p.rate - 10 * TS_PACKET / 0.1) < 1e-6


def test_pacer_measures_the_sample_bitrate():
    p = Pacer()
    out = p.feed(sample()) + p.flush()
    assert abs(p.rate * 8 - 900_000) < 1000
    assert 3.9 < out[-1][0] < 4.2


def test_pacer_survives_pcr_discontinuity():
    p = Pacer()
    out = p.feed(pcr_packet(1, 0) + NULL_PACKET + pcr_packet(1, 2_700_000) + NULL_PACKET + pcr_packet(1, 5))
    times = [t for t, _ in out]
    assert times == sorted(times) and times[-1] > 0.1


def test_rtp_round_trip_and_errors():
    p = RTPPacket(33, 65535, 0xFFFFFFFF, 0x12345678, b"x" * 10, True, (1, 2))
    assert RTPPacket.decode(p.encode()) == p
    with pytest.raises(MediaFramingError, match="shorter than its header"):
        RTPPacket.decode(b"\x80" * 5)
    with pytest.raises(MediaFramingError, match="version 2"):
        RTPPacket.decode(b"\x40" + b"\x00" * 20)


def test_rfc4571_framing():
    packets = [RTPPacket(33, i, i, 1, bytes([i]) * i).encode() for i in range(1, 5)]
    stream = b"".join(frame_rfc4571(p) for p in packets)
    f = RFC4571Framer()
    got = []
    for i in range(0, len(stream), 3):
        got += f.feed(stream[i:i + 3])
    assert got == packets and f.pending == 0
    with pytest.raises(MediaFramingError, match="shorter than an RTP header"):
        RFC4571Framer().feed(b"\x00\x05hello")


def test_rfc2250_packetisation():
    """Seven TS packets per RTP packet, PT 33, 90 kHz timestamps, consecutive sequence numbers."""
    k = TSPacketizer(rng=random.Random(1))
    ts = sample()[:TS_PACKET * 14]
    a, b = k.packetize(0.0, ts[:TS_PACKET * 7]) + k.packetize(0.5, ts[TS_PACKET * 7:])
    pa, pb = RTPPacket.decode(a), RTPPacket.decode(b)
    assert pa.payload_type == pb.payload_type == RTP_MP2T
    assert len(pa.payload) == 7 * TS_PACKET and pa.ssrc == pb.ssrc
    assert (pb.sequence - pa.sequence) & 0xFFFF == 1
    assert (pb.timestamp - pa.timestamp) & 0xFFFFFFFF == 45000
    assert not pb.marker
    c = k.packetize(5.0, ts[:TS_PACKET * 7])[0]
    assert RTPPacket.decode(c).marker                # timing discontinuity


def test_depacketizer_counts_losses_and_checks_payloads():
    d = Depacketizer((33,))
    ts = sample()[:TS_PACKET * 7]
    for seq in (10, 11, 14):
        assert d.payload(RTPPacket(33, seq, 0, 1, ts).encode()) == ts
    assert d.lost == 2
    with pytest.raises(MediaFramingError, match="payload type 32"):
        d.payload(RTPPacket(32, 15, 0, 1, b"x").encode())
    with pytest.raises(MediaFramingError, match="not whole TS packets"):
        d.payload(RTPPacket(33, 16, 0, 1, b"x" * 100).encode())


@settings(deadline=None, max_examples=100)
@given(st.binary(max_size=3000))
def test_garbage_gives_framing_errors_only(raw):
    try:
        TSFramer().feed(raw)
    except MediaFramingError:
        pass
    try:
        RFC4571Framer().feed(raw)
    except MediaFramingError:
        pass
    try:
        RTPPacket.decode(raw)
    except MediaFramingError:
        pass
