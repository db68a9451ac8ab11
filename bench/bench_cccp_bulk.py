"""CCCP bulk: RETR of a large file over TCP stream mode, our server against pyftpdlib
serving the same file to the same client (curl) in the same run."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from . import common as c


def curl_rate(port: int, size: int) -> float:
    t, _, _ = c.timed_run(["curl", "-sS", "-o", "/dev/null", f"ftp://127.0.0.1:{port}/big.ts"])
    return size / t / 1e6


def run(size: int, rounds: int = 5) -> None:
    work = tempfile.mkdtemp(prefix="bench-cccp-")
    try:
        c.make_file(os.path.join(work, "big.ts"), size)
        ours_port, theirs_port = c.free_port(), c.free_port()
        ours = c.start("cccp-server", work, str(ours_port))
        theirs = subprocess.Popen([sys.executable, "-m", "pyftpdlib", "-i", "127.0.0.1", "-p", str(theirs_port),
                                   "-d", work], env=c.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c.wait_port(ours_port)
        c.wait_port(theirs_port)
        a, b = [], []
        for _ in range(rounds):            # interleaved, best of each: the machine is noisy
            a.append(curl_rate(ours_port, size))
            b.append(curl_rate(theirs_port, size))
        rss = c.peak_rss_mb(ours.pid)
        c.stop(ours)
        theirs.terminate()
        theirs.wait()
        best_a, best_b = max(a), max(b)
        ratio = best_a / best_b
        c.record(f"CCCP bulk RETR, {size / 2**30:.1f} GiB, TCP stream mode (curl as the client)", [
            ("our CCCP server", f"{best_a:.0f} MB/s (best of {rounds}; peak RSS {rss:.0f} MB)"),
            ("pyftpdlib (sendfile)", f"{best_b:.0f} MB/s (best of {rounds})"),
            ("ratio ours / pyftpdlib", f"{ratio:.2f}"),
        ], [c.check(ratio >= 1.0, f"≥ 1.0× pyftpdlib ({ratio:.2f}×)")])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=float, default=1.0, help="file size in GiB")
    run(int(p.parse_args(argv).size * 2**30))


if __name__ == "__main__":
    main()
