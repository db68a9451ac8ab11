"""RFC 2435 (RTP/JPEG) on the wire, pure: what goes as it is, what does not, and the
packets' headers. GStreamer and ffprobe decode them in tests/interop/test_bridge.py."""

from __future__ import annotations

import io
import random
import struct

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cccp.wire.media import RTPPacket
from cccp.wire.rtpjpeg import JPEGPacketizer, UnsupportedJPEG, parse_jpeg, sdp


def _jpeg(size: tuple[int, int] = (320, 240), **kwargs: object) -> bytes:
    im = Image.effect_noise(size, 40).convert("RGB")
    out = io.BytesIO()
    im.save(out, "JPEG", **kwargs)
    return out.getvalue()


def test_a_baseline_420_jpeg_goes_as_it_is():
    data = _jpeg(quality=70)
    f = parse_jpeg(data)
    assert (f.width, f.height, f.type, f.restart_interval) == (320, 240, 1, 0)
    assert len(f.tables) == 128 and data.endswith(f.scan + b"\xff\xd9")


@pytest.mark.parametrize("kwargs, why", [
    ({"subsampling": 0}, "sampling"),                     # 4:4:4
    ({"optimize": True}, "Huffman"),                      # tables of its own
    ({"progressive": True}, "baseline"),
])
def test_what_rfc_2435_cannot_carry_is_refused_with_the_reason(kwargs, why):
    with pytest.raises(UnsupportedJPEG, match=why):
        parse_jpeg(_jpeg(**kwargs))


def test_other_refusals():
    with pytest.raises(UnsupportedJPEG, match="no SOI"):
        parse_jpeg(b"not a jpeg")
    grey = io.BytesIO()
    Image.new("L", (64, 64)).save(grey, "JPEG")
    with pytest.raises(UnsupportedJPEG, match="components"):
        parse_jpeg(grey.getvalue())
    with pytest.raises(UnsupportedJPEG, match="2040"):
        parse_jpeg(_jpeg((2100, 16)))
    data = _jpeg()
    with pytest.raises(UnsupportedJPEG):
        parse_jpeg(data[:40])                              # truncated in a segment


def test_restart_markers_make_type_65_with_a_restart_header():
    data = _jpeg()
    at = data.index(b"\xff\xda")
    data = data[:at] + b"\xff\xdd\x00\x04\x00\x08" + data[at:]      # DRI 8
    f = parse_jpeg(data)
    assert (f.type, f.restart_interval) == (65, 8)
    first = RTPPacket.decode(JPEGPacketizer(rng=random.Random(1)).packetize(f, 0.0)[0])
    assert first.payload[4] == 65 and struct.unpack_from(">HH", first.payload, 8) == (8, 0xFFFF)
    assert struct.unpack_from(">BBH", first.payload, 12) == (0, 0, 128)      # then the tables


def test_packets_carry_offsets_tables_once_and_the_marker_on_the_last():
    f = parse_jpeg(_jpeg((640, 480), quality=90))
    p = JPEGPacketizer(rng=random.Random(7), max_payload=1000)
    packets = [RTPPacket.decode(x) for x in p.packetize(f, 1.5)]
    assert len(packets) > 3 and all(len(x) <= 12 + 1000 for x in p.packetize(f, 1.6))
    scan, offset = b"", 0
    for i, pkt in enumerate(packets):
        assert pkt.payload_type == 26 and pkt.timestamp == packets[0].timestamp
        assert pkt.marker == (i == len(packets) - 1)
        assert pkt.sequence == (packets[0].sequence + i) & 0xFFFF
        off = struct.unpack(">I", pkt.payload[:4])[0] & 0xFFFFFF
        kind, q, w8, h8 = pkt.payload[4:8]
        assert (off, kind, q, w8, h8) == (offset, 1, 255, 80, 60)
        body = pkt.payload[8:]
        if i == 0:
            assert struct.unpack_from(">BBH", body) == (0, 0, 128) and body[4:132] == f.tables
            body = body[132:]
        scan += body
        offset += len(body)
    assert scan == f.scan
    later = RTPPacket.decode(p.packetize(f, 2.5)[0])
    assert (later.timestamp - packets[0].timestamp) & 0xFFFFFFFF == 90_000       # 90 kHz clock


def test_the_sdp_names_payload_type_26():
    text = sdp(5004)
    assert "m=video 5004 RTP/AVP 26\r\n" in text and "a=rtpmap:26 JPEG/90000" in text


class _Viewfinder:
    def __init__(self) -> None:
        self.viewers: list = []

    def subscribe(self, viewer):
        self.viewers.append(viewer)
        return lambda: self.viewers.remove(viewer)


class _Consumer:
    def __init__(self) -> None:
        self.packets: list[bytes] = []
        self.producer = None

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def write(self, data):
        self.packets.append(data)


@pytest_twisted.ensureDeferred
async def test_a_frame_rfc_2435_cannot_carry_is_re_encoded_and_a_paused_viewer_drops_frames(reactor):
    from twisted.internet import task

    from cccp.camera_live import RTPJPEGSource
    vf, out = _Viewfinder(), _Consumer()
    source = RTPJPEGSource(reactor, vf)
    done = source.startProducing(out)
    source.frame(_jpeg((640, 480), subsampling=0))            # 4:4:4: Pillow re-encodes it
    for _ in range(100):
        if out.packets:
            break
        await task.deferLater(reactor, 0.02, lambda: None)
    assert out.packets and RTPPacket.decode(out.packets[-1]).marker
    assert RTPPacket.decode(out.packets[0]).payload[4] == 1          # now 4:2:0
    source.pauseProducing()
    n = len(out.packets)
    source.frame(_jpeg())
    assert len(out.packets) == n and source.dropped == 1             # newest wins: no queue
    source.resumeProducing()
    source.frame(_jpeg())
    assert len(out.packets) > n
    source.stopProducing()
    assert vf.viewers == [] and out.producer is None
    await done


def _steady() -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").resize((64, 48)).save(out, "JPEG", quality=70)
    return out.getvalue()


_STEADY = _steady()           # the same bytes in every example


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_damaged_frame_is_refused_cleanly_never_a_crash(data):
    """Truncated or mangled segments (SOF, DRI, SOS, DQT) give UnsupportedJPEG or a frame."""
    mutated = bytearray(_STEADY)
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, min(len(mutated) - 1, 700)))
        mutated[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(2, len(mutated)))
    for candidate in (bytes(mutated), bytes(mutated[:cut])):
        try:
            f = parse_jpeg(candidate)
        except UnsupportedJPEG:
            continue
        assert len(f.tables) == 128 and f.width and f.height


def test_a_short_quantisation_table_is_refused():
    data = bytearray(_jpeg())
    at = data.index(b"\xff\xdb")
    data[at + 2:at + 4] = (2 + 1 + 10).to_bytes(2, "big")       # a DQT that says 10 bytes
    with pytest.raises(UnsupportedJPEG):
        parse_jpeg(bytes(data))
