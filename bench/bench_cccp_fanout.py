"""CCCP live fan-out: 50 viewers of one live source (``/live/testpattern`` at 5 Mbit/s,
MODE P 7 over UDP) against one viewer of the same source in the same run: the server's
CPU (its own process, not the encoder's) and RSS, the encoders running, and loss (the
kernel's UDP receive-buffer drops during the run, every viewer's byte count, and the
continuity counters of three viewers' TS)."""

from __future__ import annotations

import ftplib
import os
import select
import shutil
import socket
import tempfile
import time

from . import common as c

BITRATE = "5M"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def encoders(pid: int) -> int:
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    head, rest = f.read().rsplit(")", 1)
            except OSError:
                continue
            if head.endswith("(ffmpeg") and int(rest.split()[1]) == pid:
                n += 1
    return n


def udp_drops() -> int:
    """Datagrams the kernel dropped for want of receive buffer (all UDP sockets)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    head, values = rows[0], rows[1]
    return int(values[head.index("RcvbufErrors")]) + int(values[head.index("InErrors")])


class Viewers:
    """*n* UDP receivers and their CCCP sessions, all read in this thread."""

    def __init__(self, port: int, n: int) -> None:
        self.socks, self.sessions = [], []
        self.bytes = [0] * n
        self.cc_errors = [0] * n
        self._cc: list[dict[int, int]] = [{} for _ in range(n)]
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            self.socks.append(s)
            f = ftplib.FTP()
            f.connect("127.0.0.1", port, timeout=60)
            f.login()
            f.voidcmd("TYPE I M")
            f.voidcmd("MODE P 7")
            p = s.getsockname()[1]
            f.voidcmd(f"PORT 127,0,0,1,{p >> 8},{p & 255}")
            f.putcmd("RETR /live/testpattern")
            reply = f.getresp()
            assert reply.startswith("150"), reply
            self.sessions.append(f)
        self.index = {s.fileno(): i for i, s in enumerate(self.socks)}
        #: The viewers whose continuity counters are followed (the first, a middle one, the
        #: last: following all of them in Python would make this reader the bottleneck).
        self.checked = {0, n // 2, n - 1}

    def read(self, seconds: float, check: bool) -> None:
        """Read for *seconds*; with *check*, follow every viewer's continuity counters."""
        end = time.monotonic() + seconds
        buf = bytearray(65536)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select(self.socks, [], [], min(left, 0.2))
            for s in ready:
                i = self.index[s.fileno()]
                while True:
                    try:
                        n = s.recv_into(buf)
                    except BlockingIOError:
                        break
                    self.bytes[i] += n
                    if check and i in self.checked:
                        self._check(i, buf, n)

    def _check(self, i: int, buf: bytearray, n: int) -> None:
        last = self._cc[i]
        for at in range(0, n - 187, 188):
            pid = ((buf[at + 1] & 0x1F) << 8) | buf[at + 2]
            if pid == 0x1FFF:
                continue
            cc = buf[at + 3] & 0x0F
            if buf[at + 3] & 0x10 and pid in last and cc != (last[pid] + 1) & 0x0F and cc != last[pid]:
                self.cc_errors[i] += 1
            last[pid] = cc

    def close(self) -> None:
        import contextlib
        for f in self.sessions:
            with contextlib.suppress(ftplib.all_errors):     # (the server may have hung up)
                f.putcmd("ABOR")
                f.getresp()
                f.getresp()
            with contextlib.suppress(ftplib.all_errors):
                f.quit()
        for s in self.socks:
            s.close()


def measure(port: int, server_pid: int, n: int, seconds: float) -> dict[str, float]:
    v = Viewers(port, n)
    try:
        v.read(3.0, check=False)                     # every viewer in, from an I-frame on
        drops0, cpu0, t0 = udp_drops(), cpu_seconds(server_pid), time.monotonic()
        v.bytes = [0] * n
        v.read(seconds, check=True)
        t1, cpu1, drops1 = time.monotonic(), cpu_seconds(server_pid), udp_drops()
        running = encoders(server_pid)
    finally:
        v.close()
    rate = sum(v.bytes) / n * 8 / (t1 - t0)
    return {"cpu": (cpu1 - cpu0) / (t1 - t0), "rss": c.rss_mb(server_pid), "drops": drops1 - drops0,
            "cc": sum(v.cc_errors), "rate": rate, "min_rate": min(v.bytes) * 8 / (t1 - t0), "encoders": running}


def run(viewers: int = 50, seconds: float = 10.0) -> None:
    work = tempfile.mkdtemp(prefix="bench-fanout-")
    rows, verdicts = [], []
    try:
        port = c.free_port()
        server = c.start("cccp-live", work, str(port), BITRATE)
        c.wait_port(port)
        one = measure(port, server.pid, 1, seconds)
        time.sleep(1.0)
        many = measure(port, server.pid, viewers, seconds)
        c.stop(server)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_viewer = (many["cpu"] - one["cpu"]) / (viewers - 1)
    for name, m in (("1 viewer", one), (f"{viewers} viewers", many)):
        rows.append((name, f"server CPU {m['cpu'] * 100:.1f} % of a core, RSS {m['rss']:.0f} MB, "
                           f"{m['encoders']} encoder(s), {m['rate'] / 1e6:.2f} Mbit/s per viewer "
                           f"(slowest {m['min_rate'] / 1e6:.2f}), UDP drops {m['drops']}, CC errors {m['cc']}"))
    rows.append(("server CPU per extra viewer", f"{per_viewer * 100:.2f} % of a core"))
    rows.append(("RSS growth for the extra viewers", f"{many['rss'] - one['rss']:.1f} MB"))
    verdicts.append(c.check(many["encoders"] == 1 and one["encoders"] == 1,
                            f"one encoder ({one['encoders']}, {many['encoders']})"))
    verdicts.append(c.check(per_viewer < 0.02, f"server CPU per extra viewer < 2 % of a core "
                                               f"({per_viewer * 100:.2f} %)"))
    verdicts.append(c.check(many["drops"] == 0 and many["cc"] == 0 and one["cc"] == 0,
                            f"loss 0 (UDP drops {many['drops']}, CC errors {many['cc']})"))
    verdicts.append(c.check(many["min_rate"] > 0.98 * one["rate"],
                            "every viewer gets the full rate (slowest ≥ 98 % of the lone viewer's)"))
    c.record(f"CCCP live fan-out: {viewers} UDP viewers of one {BITRATE}bit/s source", rows, verdicts)


def main(argv: list[str] | None = None) -> None:
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--viewers", type=int, default=50)
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args(argv)
    run(a.viewers, a.seconds)


if __name__ == "__main__":
    main()
