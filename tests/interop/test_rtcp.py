"""RTCP (RFC 3550) for RTP transfers: sender reports whose RTP timestamp is the stream's,
the CNAME, BYE at the end; a receiver's report shows in STAT. tshark decodes what we send."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import protocol

from cccp.client import CommandFailed, connect
from cccp.wire import rtcp
from cccp.wire.media import RTPPacket

from .test_media_peers import long_clip, sleep  # noqa: F401  (fixtures)
from .test_media_peers import media as media

TSHARK = shutil.which("tshark")


class Collect(protocol.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[float, bytes, Any]] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.got.append((time.monotonic(), data, addr))


def two_ports(reactor: Any, rtp: Any = None, ctl: Any = None) -> tuple[Any, Any, Any, Any]:
    """An even UDP port for RTP and the next one for RTCP (with these protocols)."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1] & ~1
        s.close()
        rtp, ctl = rtp or Collect(), ctl or Collect()
        try:
            a = reactor.listenUDP(p, rtp, interface="127.0.0.1")
        except Exception:
            continue
        try:
            b = reactor.listenUDP(p + 1, ctl, interface="127.0.0.1")
        except Exception:
            a.stopListening()
            continue
        return a, b, rtp, ctl
    raise AssertionError("no two free UDP ports")


def pcap(datagrams: list[tuple[bytes, int, int]]) -> bytes:
    """A pcap file (raw IPv4) of UDP datagrams 127.0.0.1:sport -> 127.0.0.1:dport."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]
    for i, (payload, sport, dport) in enumerate(datagrams):
        udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
        out.append(struct.pack("<IIII", 1000 + i, 0, len(ip), len(ip)) + ip)
    return b"".join(out)


@pytest_twisted.ensureDeferred
async def test_rtp_over_udp_gets_sender_reports_and_the_receivers_report_shows_in_stat(reactor, media, tmp_path):
    a, b, rtp_in, rtcp_in = two_ports(reactor)
    port = a.getHost().port
    try:
        c = await connect(reactor, "127.0.0.1", media.port)
        await c.type("I R 33")
        await c.mode("P 1")
        transfer = c.streamTo("/long.ts", "127.0.0.1", port)
        await sleep(reactor, 4.5)
        reports = [(t, d, addr) for t, d, addr in rtcp_in.got if rtcp.is_rtcp(d)]
        assert len(reports) >= 2                            # one with the first packet, then every 2 s
        first_rtp = RTPPacket.decode(rtp_in.got[0][1])
        src = reports[-1][2]                                 # from the data port + 1
        for t, data, _ in reports:
            pt, = struct.unpack_from("!B", data, 1)
            assert pt == rtcp.SR
            ssrc, _, _, rtp_ts = struct.unpack_from("!IIII", data, 4)
            assert ssrc == first_rtp.ssrc
            # the RTP packet that arrived nearest the report carries about the same timestamp
            near = min(rtp_in.got, key=lambda g: abs(g[0] - t))
            assert abs(((rtp_ts - RTPPacket.decode(near[1]).timestamp + (1 << 31)) % (1 << 32)) - (1 << 31)) \
                < 90000 * 0.15
            assert b"cccp@127.0.0.1" in data                  # SDES CNAME
        # The receiver reports 5 % lost (13/256) from its RTCP port to the sender's
        b.write(rtcp.receiver_report(0x1234ABCD, first_rtp.ssrc, 13, 42, 1000, 900), src)
        await sleep(reactor, 0.3)
        stat = await c.status()
        assert "receiver 1234ABCD lost 5.1 % (42 packets), jitter 10.0 ms" in stat.text, stat.text
        await c.abort()
        with pytest.raises(CommandFailed):
            await transfer
        await sleep(reactor, 0.3)
        last = rtcp_in.got[-1][1]
        assert struct.pack("!B", rtcp.BYE) in last[8:] and b"stopped" in last    # BYE at ABOR
        await c.quit()
    finally:
        a.stopListening()
        b.stopListening()
    # tshark decodes our reports as RTCP sender reports with the same fields
    assert TSHARK, "tshark is needed (.ci/run installs it)"
    cap = tmp_path / "rtcp.pcap"
    cap.write_bytes(pcap([(d, addr[1], port + 1) for _, d, addr in rtcp_in.got]))
    r = subprocess.run([TSHARK, "-r", str(cap), "-d", f"udp.port=={port + 1},rtcp", "-Y", "rtcp.pt==200",
                        "-T", "fields", "-e", "rtcp.senderssrc", "-e", "rtcp.sdes.text"],
                       capture_output=True, text=True, timeout=60)
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert len(rows) == len(rtcp_in.got) and all(int(x[0], 16) == first_rtp.ssrc for x in rows), r.stdout + r.stderr
    assert all("cccp@127.0.0.1" in x[1] for x in rows)


class Relay(protocol.DatagramProtocol):
    """Between the server and GStreamer: RTP on one port (every twentieth datagram
    dropped), or the server's RTCP on the next (whose source it notes)."""

    def __init__(self, to: int, rtcp_port: bool = False, drop_every: int = 20) -> None:
        self.to = to
        self.rtcp_port = rtcp_port
        self.drop_every = drop_every
        self.n = 0
        self.dropped = 0
        self.server: Any = None          # where the server's RTCP comes from

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if self.rtcp_port:
            self.server = addr
        else:
            self.n += 1
            if self.n % self.drop_every == 0:
                self.dropped += 1
                return
        self.transport.write(data, ("127.0.0.1", self.to))


@pytest_twisted.ensureDeferred
async def test_gstreamer_rtpbin_reports_the_loss_of_a_lossy_relay_and_stat_shows_it(reactor, media):
    """GStreamer's rtpbin takes the RTP and our RTCP through a relay that drops 5 % of the
    RTP; its receiver reports come back, and STAT says about 5 % were lost."""
    gst = shutil.which("gst-launch-1.0")
    assert gst, "gst-launch-1.0 is needed (.ci/run installs GStreamer)"
    from .test_tape_deck import Process
    g_rtp = two_ports(reactor)                     # GStreamer's ports (freed just before it binds them)
    gport = g_rtp[0].getHost().port
    for p in g_rtp[:2]:
        await p.stopListening()
    rtp_relay = Relay(gport)
    rtcp_relay = Relay(gport + 1, rtcp_port=True)
    ra, rb, _, _ = two_ports(reactor, rtp_relay, rtcp_relay)   # the relay's two ports, for the server
    rport = ra.getHost().port

    class Back(protocol.DatagramProtocol):
        """GStreamer's receiver reports, passed on to where the server's reports come from."""

        def datagramReceived(self, data: bytes, addr: Any) -> None:
            if rtcp_relay.server is not None:
                rb.write(data, rtcp_relay.server)
    rc = reactor.listenUDP(0, Back(), interface="127.0.0.1")
    relay_in = rc.getHost().port
    caps = "application/x-rtp,media=video,clock-rate=90000,encoding-name=MP2T,payload=33"
    proc = Process(reactor, [gst, "-q", "rtpbin", "name=rb", "rtcp-sync-send-time=false",
                             "udpsrc", "address=127.0.0.1", f"port={gport}", f"caps={caps}", "!", "rb.recv_rtp_sink_0",
                             "udpsrc", "address=127.0.0.1", f"port={gport + 1}", "!", "rb.recv_rtcp_sink_0",
                             "rb.", "!", "rtpmp2tdepay", "!", "fakesink",
                             "rb.send_rtcp_src_0", "!", "udpsink", "host=127.0.0.1", f"port={relay_in}",
                             "sync=false", "async=false"])
    try:
        await sleep(reactor, 0.5)
        c = await connect(reactor, "127.0.0.1", media.port)
        await c.type("I R 33")
        await c.mode("P 1")
        transfer = c.streamTo("/long.ts", "127.0.0.1", rport)
        found = None
        for _ in range(70):
            await sleep(reactor, 0.1)
            stat = await c.status()
            m = __import__("re").search(r"lost ([\d.]+) % \((\d+) packets\)", stat.text)
            if m and int(m.group(2)) > 0:
                found = m
                break
        assert found, f"no receiver report with a loss came back: {stat.text}"
        assert 2.0 < float(found.group(1)) < 9.0 and rtp_relay.dropped > 0, (stat.text, rtp_relay.dropped)
        # and /metrics says the same (curl, checked by promtool)
        from ptpip.metrics import metrics_site

        from .test_metrics import scrape, value
        web = reactor.listenTCP(0, metrics_site(media.factory.metrics), interface="127.0.0.1")
        try:
            samples = await scrape(reactor, web.getHost().port)
        finally:
            await web.stopListening()
        lost = value(samples, "cccp_rtcp_fraction_lost", path="/long.ts")
        assert 0.02 < lost < 0.09, samples
        assert value(samples, "cccp_rtcp_packets_lost", path="/long.ts") > 0
        assert value(samples, "cccp_rtcp_jitter_seconds", path="/long.ts") >= 0
        await c.abort()
        with pytest.raises(CommandFailed):
            await transfer
        await c.quit()
    finally:
        proc.transport.signalProcess("TERM")
        await proc.ended
        for p in (ra, rb, rc):
            p.stopListening()


@pytest_twisted.ensureDeferred
async def test_rtp_over_tcp_carries_rtcp_in_its_framing_both_ways(reactor, media):
    """Over TCP the reports share the RFC 4571 framing (rtcp-mux): the receiver tells them
    from RTP by payload type, and its own receiver report, sent back on the same
    connection, shows in STAT. At the end of the stream comes a BYE."""
    from twisted.internet import defer

    class Receiver(protocol.Protocol):
        def __init__(self) -> None:
            self.buf = b""
            self.rtp: list[bytes] = []
            self.rtcp: list[bytes] = []
            self.answered = defer.Deferred()
            self.ended = defer.Deferred()

        def dataReceived(self, data: bytes) -> None:
            self.buf += data
            while len(self.buf) >= 2 and len(self.buf) - 2 >= int.from_bytes(self.buf[:2], "big"):
                n = int.from_bytes(self.buf[:2], "big")
                frame, self.buf = self.buf[2:2 + n], self.buf[2 + n:]
                if rtcp.is_rtcp(frame):
                    self.rtcp.append(frame)
                    if not self.answered.called and self.rtp:
                        source = RTPPacket.decode(self.rtp[0]).ssrc
                        rr = rtcp.receiver_report(0x0BADCAFE, source, 26, 7, 100, 450)
                        self.transport.write(len(rr).to_bytes(2, "big") + rr)
                        self.answered.callback(None)
                else:
                    self.rtp.append(frame)

        def connectionLost(self, reason: Any = None) -> None:
            self.ended.callback(None)

    receiver = Receiver()
    factory = protocol.Factory.forProtocol(lambda: receiver)
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        c = await connect(reactor, "127.0.0.1", media.port)
        await c.type("I R 33")
        transfer = c.streamTo("/sample.ts", "127.0.0.1", listening.getHost().port)
        await receiver.answered
        await sleep(reactor, 0.2)
        stat = await c.status()
        assert "receiver 0BADCAFE lost 10.2 % (7 packets), jitter 5.0 ms" in stat.text, stat.text
        reply = await transfer
        assert reply.code == 226
        await receiver.ended
        await c.quit()
    finally:
        await listening.stopListening()
    assert receiver.rtp and all(RTPPacket.decode(p).payload_type == 33 for p in receiver.rtp)
    assert receiver.rtcp[0][1] == rtcp.SR and rtcp.BYE in receiver.rtcp[-1][8:]
