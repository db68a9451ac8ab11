"""PTP-IP concurrency: N sessions (2N TCP connections) at once, each doing GetDeviceInfo
and a small GetObject. Completion time, errors, responder RSS per session."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from . import common as c


def run(sessions: int = 1000) -> None:
    work = tempfile.mkdtemp(prefix="bench-conc-")
    try:
        with open(os.path.join(work, "small.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff" + os.urandom(2000))
        port = c.free_port()
        resp = c.start("responder", work, str(port))
        c.wait_port(port)
        time.sleep(0.3)
        idle_rss = c.rss_mb(resp.pid)
        client = subprocess.Popen([sys.executable, "-m", "bench.procs", "ptpip-many", str(port), str(sessions),
                                   "/small.jpg"], env=c.env(), cwd=c.ROOT, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = client.stdout.readline().decode().split(" ", 2)
        secs, errors = float(line[0]), int(line[1])
        busy_rss = c.rss_mb(resp.pid)
        client.stdin.write(b"\n")
        client.stdin.flush()
        client.wait(60)
        c.stop(resp)
        per = (busy_rss - idle_rss) * 1024 / max(1, sessions - errors)
        c.record(f"PTP-IP concurrency, {sessions} sessions ({2 * sessions} TCP connections)", [
            ("completion time", f"{secs:.2f} s"),
            ("errors", f"{errors} {line[2].strip() if len(line) > 2 else ''}".strip()),
            ("responder RSS idle / with all sessions open", f"{idle_rss:.0f} MB / {busy_rss:.0f} MB"),
            ("responder RSS per session", f"{per:.0f} KB"),
        ], [c.check(errors == 0, f"no errors ({errors})"),
            c.check(per < 100, f"< 100 KB per session ({per:.0f} KB)")])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sessions", type=int, default=1000)
    run(p.parse_args(argv).sessions)


if __name__ == "__main__":
    main()
