"""PTP-IP bulk: GetObject of a large object, our initiator ← our responder, against a bare
Twisted TCP stream of the same bytes between two processes; and gphoto2 --get-file
against `ptpip get`. Reports MB/s, ratios and peak RSS of both processes."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from . import common as c

AVI = b"RIFF\x00\x00\x00\x00AVI LIST"        # gphoto2 downloads only objects of a known format


def run(size: int, with_gphoto2: bool = True) -> None:
    work = tempfile.mkdtemp(prefix="bench-bulk-")
    root = os.path.join(work, "store")
    os.makedirs(root)
    obj = os.path.join(root, "big.avi")
    c.make_file(obj, size, AVI)
    out_dir = os.path.join(work, "out")
    rows, verdicts = [], []
    try:
        # bare stream
        port = c.free_port()
        server = c.start("bare-server", str(port), str(size))
        import time
        time.sleep(0.5)
        t, client_rss, out = c.timed_run([sys.executable, "-m", "bench.procs", "bare-client", str(port)])
        server_rss = c.peak_rss_mb(server.pid)
        c.stop(server)
        n, secs = out.split()[0:2]
        bare = int(n) / float(secs) / 1e6
        rows.append(("bare Twisted stream", f"{bare:.0f} MB/s (server {server_rss:.0f} MB, client {client_rss:.0f} MB)"))

        # ours, into /dev/null like the bare client
        port = c.free_port()
        resp = c.start("responder", root, str(port))
        c.wait_port(port)
        t, init_rss, out = c.timed_run([sys.executable, "-m", "bench.procs", "ptpip-get", str(port), "/big.avi"])
        n, secs = out.split()[0:2]
        assert int(n) == size
        ours = size / float(secs) / 1e6
        resp_rss = c.peak_rss_mb(resp.pid)
        rows.append(("GetObject, our initiator ← our responder", f"{ours:.0f} MB/s (responder {resp_rss:.0f} MB, "
                                                                  f"initiator {init_rss:.0f} MB)"))
        rows.append(("ratio ours / bare", f"{ours / bare:.2f}"))
        verdicts.append(c.check(ours / bare >= 0.5, f"GetObject ≥ 0.5× the bare stream ({ours / bare:.2f}×)"))
        verdicts.append(c.check(resp_rss < 64 and init_rss < 64,
                                f"responder and initiator peak RSS < 64 MB ({resp_rss:.0f} / {init_rss:.0f} MB "
                                f"for {size / 2**30:.1f} GiB)"))
        # the CLI, writing a real file (fsync included), as a user runs it
        os.makedirs(out_dir, exist_ok=True)
        t, cli_rss, _ = c.timed_run([sys.executable, "-m", "ptpip.cli", "--port", str(port), "get",
                                     "/big.avi", "-o", out_dir, "--no-progress"])
        cli = size / t / 1e6
        assert os.path.getsize(os.path.join(out_dir, "big.avi")) == size
        os.unlink(os.path.join(out_dir, "big.avi"))
        rows.append(("`ptpip get` to a file (process start-up included)", f"{cli:.0f} MB/s (RSS {cli_rss:.0f} MB)"))

        if with_gphoto2 and shutil.which("gphoto2"):
            home = os.path.join(work, "home")
            os.makedirs(home)
            envv = dict(os.environ, HOME=home)
            t0 = time.monotonic()
            subprocess.run(["gphoto2", "--camera", "PTP/IP Camera", "--port", f"ptpip:127.0.0.1:{port}:{port}",
                            "--get-file", "1", "--force-overwrite"], cwd=out_dir, env=envv, check=True,
                           capture_output=True)
            gp = size / (time.monotonic() - t0) / 1e6
            got = os.path.getsize(os.path.join(out_dir, "big.avi"))
            rows.append(("gphoto2 --get-file ← responder", f"{gp:.0f} MB/s ({got} bytes)"))
            rows.append(("ratio `ptpip get` / gphoto2 (both to a file)", f"{cli / gp:.2f}"))
            verdicts.append(c.check(cli / gp >= 1.0, f"our initiator ≥ 1.0× gphoto2 ({cli / gp:.2f}×)"))
        c.stop(resp)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    c.record(f"PTP-IP bulk, {size / 2**30:.1f} GiB object", rows, verdicts)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=float, default=1.0, help="object size in GiB (4 for the RSS check)")
    p.add_argument("--no-gphoto2", action="store_true")
    a = p.parse_args(argv)
    run(int(a.size * 2**30), not a.no_gphoto2)


if __name__ == "__main__":
    main()
