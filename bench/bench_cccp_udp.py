"""CCCP UDP: the highest MPEG2-TS rate sent in MODE P 7 with zero loss on loopback, and
the pacing error of a real-time stream at 20 Mbit/s."""

from __future__ import annotations

import ftplib
import os
import shutil
import socket
import tempfile
import threading
import time

from . import common as c

PCR_PID, DATA_PID = 0x100, 0x101


def pcr_packet(pcr: int, cc: int) -> bytes:
    base, ext = divmod(pcr, 300)
    af = bytes([183, 0x10, (base >> 25) & 0xFF, (base >> 17) & 0xFF, (base >> 9) & 0xFF, (base >> 1) & 0xFF,
                ((base & 1) << 7) | 0x7E | (ext >> 8), ext & 0xFF]) + b"\xff" * 176
    return bytes([0x47, 0x41, PCR_PID & 0xFF, 0x20 | (cc & 0x0F)]) + af


def make_ts(path: str, rate_bps: float, seconds: float, pcr_every: float = 0.02) -> int:
    """A constant-rate TS: a PCR packet every *pcr_every* seconds, filler packets between."""
    per_pcr = max(1, int(rate_bps * pcr_every / 8 / 188))
    filler = (bytes([0x47, 0x01, DATA_PID & 0xFF, 0x10]) + b"\x00" * 184) * (per_pcr - 1)
    total_groups = int(seconds / pcr_every)
    with open(path, "wb") as f:
        for g in range(total_groups):
            byte = g * per_pcr * 188
            pcr = int(byte * 8 / rate_bps * 27_000_000)
            f.write(pcr_packet(pcr, g))
            f.write(filler)
    return os.path.getsize(path)


class Receiver(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.arrivals: list[tuple[float, int]] = []
        self.stop = False

    def run(self) -> None:
        buf = bytearray(65536)
        while not self.stop:
            try:
                n = self.sock.recv_into(buf)
            except TimeoutError:
                continue
            self.arrivals.append((time.monotonic(), n))


def stream(port: int, path: str) -> tuple[int, float, float]:
    """RETR over UDP (MODE P 7) to a fresh receiver; (bytes, seconds, measured bit/s after 1 s)."""
    r = Receiver()
    r.start()
    f = ftplib.FTP()
    f.connect("127.0.0.1", port, timeout=120)
    f.login()
    f.voidcmd("TYPE I M")
    f.voidcmd("MODE P 7")
    f.voidcmd(f"PORT 127,0,0,1,{r.port >> 8},{r.port & 255}")
    f.putcmd(f"RETR /{os.path.basename(path)}")
    assert f.getresp().startswith("150")
    final = f.getresp()
    time.sleep(0.5)
    r.stop = True
    r.join()
    f.quit()
    assert final.startswith("226"), final
    got = sum(n for _, n in r.arrivals)
    t0, t1 = r.arrivals[0][0], r.arrivals[-1][0]
    tail = [(t, n) for t, n in r.arrivals if t >= t0 + 1.0]
    rate = sum(n for _, n in tail[1:]) * 8 / (tail[-1][0] - tail[0][0]) if len(tail) > 2 else float("nan")
    return got, t1 - t0, rate


def run() -> None:
    work = tempfile.mkdtemp(prefix="bench-udp-")
    rows, verdicts = [], []
    try:
        port = c.free_port()
        server = c.start("cccp-server", work, str(port))
        c.wait_port(port)
        best = 0.0
        for mbps in (50, 100, 200, 400, 700, 1000, 1500):
            path = os.path.join(work, f"r{mbps}.ts")
            size = make_ts(path, mbps * 1e6, 3.0)
            got, secs, rate = stream(port, path)
            lost = size - got
            achieved = rate / 1e6
            rows.append((f"{mbps} Mbit/s stream", f"{got}/{size} bytes, lost {lost}, measured {achieved:.0f} Mbit/s"))
            os.unlink(path)
            if lost == 0 and achieved >= 0.98 * mbps:
                best = mbps
            else:
                break
        verdicts.append(c.check(best >= 1000, f"≥ 1 Gbit/s with zero loss, on time (highest held: {best} Mbit/s)"))
        path = os.path.join(work, "r20.ts")
        size = make_ts(path, 20e6, 6.0)
        got, secs, rate = stream(port, path)
        err = abs(rate - 20e6) / 20e6
        rows.append(("20 Mbit/s real-time stream, 6 s", f"measured {rate / 1e6:.2f} Mbit/s, error {err * 100:.2f} %, "
                                                       f"lost {size - got} bytes"))
        verdicts.append(c.check(err <= 0.02, f"pacing error ≤ 2 % ({err * 100:.2f} %)"))
        c.stop(server)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    c.record("CCCP UDP (MODE P 7, TYPE I M, loopback)", rows, verdicts)


def main(argv: list[str] | None = None) -> None:
    run()


if __name__ == "__main__":
    main()
