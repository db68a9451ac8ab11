"""PTP-IP latency: small transactions (GetObjectInfo) per second on one session, against
a bare request/response ping-pong of the same sizes over loopback."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from ptpip.constants import OperationCode as Op
from ptpip.datasets import ObjectInfo
from ptpip.packets import EndData, OperationRequest, OperationResponse, StartData

from . import common as c


def run(seconds: float = 2.0, rounds: int = 3) -> None:
    work = tempfile.mkdtemp(prefix="bench-lat-")
    try:
        with open(os.path.join(work, "IMG_0001.JPG"), "wb") as f:
            f.write(b"\xff\xd8\xff" + b"\x00" * 1000)
        # Sizes of one GetObjectInfo transaction on the wire.
        req = len(OperationRequest(1, Op.GetObjectInfo, 1, (1,)).encode())
        info = ObjectInfo(storage_id=0x10001, object_format=0x3801, object_compressed_size=1003,
                          filename="IMG_0001.JPG", capture_date="20260101T000000",
                          modification_date="20260101T000000").encode()
        resp = len(StartData(1, len(info)).encode()) + len(EndData(1, info).encode()) + \
            len(OperationResponse(0x2001, 1).encode())
        port = c.free_port()
        pong = c.start("pong-server", str(port), str(req), str(resp))
        port2 = c.free_port()
        resp_p = c.start("responder", work, str(port2))
        c.wait_port(port)
        c.wait_port(port2)
        bares, ourss = [], []
        for _ in range(rounds):           # interleaved, best of each: the machine is noisy
            _, _, out = c.timed_run([sys.executable, "-m", "bench.procs", "pong-client", str(port), str(req),
                                     str(resp), str(seconds)])
            n, secs = out.split()[:2]
            bares.append(int(n) / float(secs))
            _, _, out = c.timed_run([sys.executable, "-m", "bench.procs", "ptpip-latency", str(port2),
                                     "/IMG_0001.JPG", str(seconds)])
            n, secs = out.split()[:2]
            ourss.append(int(n) / float(secs))
        c.stop(pong)
        c.stop(resp_p)
        bare, ours = max(bares), max(ourss)
        ratio = ours / bare
        c.record("PTP-IP latency (GetObjectInfo, one session)", [
            ("bare ping-pong", f"{bare:.0f} round trips/s ({req} B request, {resp} B answer; best of {rounds})"),
            ("GetObjectInfo, our initiator ← our responder", f"{ours:.0f} transactions/s "
                                                              f"({1e6 / ours:.0f} µs each)"),
            ("ratio ours / bare", f"{ratio:.2f}"),
        ], [c.check(ratio >= 0.5, f"≥ 0.5× the bare ping-pong ({ratio:.2f}×)")])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    run()


if __name__ == "__main__":
    main()
