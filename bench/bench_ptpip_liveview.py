"""PTP-IP live view: frames per second through our initiator (GetStream on the standard
camera, GetViewFinderData on a Canon EOS, GetLiveViewImg on a Nikon) against a bare
request/response ping-pong of the same sizes over loopback; and the rate gphoto2's
``--capture-movie`` reaches against the same responder, as a ratio to ours (well under 1:
gphoto2, not the responder, sets the pace). Servers run on one core and clients on
the other, ours and the anchor alike; rounds alternate and the best of each counts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from ptpip.devices.liveview import ViewSettings, draw_live_frame
from ptpip.wire.constants import OperationCode as Op
from ptpip.wire.packets import EndData, OperationRequest, OperationResponse, StartData
from ptpip.wire.vendor import CanonOp, NikonOp

from . import common as c

#: Profile, the per-frame operation, the bytes the camera puts around the JPEG, gphoto2's model.
PATHS = [
    ("generic", Op.GetStream, 0, None),
    ("canon-eos", CanonOp.GetViewFinderData, 8 + 8, "Canon EOS (WLAN)"),
    ("nikon", NikonOp.GetLiveViewImg, 384, "Nikon DSLR (WLAN)"),
]


def _sizes(code: int, frame: int, extra: int) -> tuple[int, int]:
    params = (0x00200000, 0, 0) if code == CanonOp.GetViewFinderData else ()
    req = len(OperationRequest(1, code, 1, params).encode())
    data = b"\0" * (frame + extra)
    resp = len(StartData(1, len(data)).encode()) + len(EndData(1, data).encode()) + \
        len(OperationResponse(0x2001, 1).encode())
    return req, resp


def _gphoto2_fps(model: str, port: int, seconds: int, home: str) -> float:
    gphoto2 = shutil.which("gphoto2")
    if not gphoto2:
        raise RuntimeError("gphoto2 is needed (.ci/run installs it)")
    t0 = time.monotonic()
    r = subprocess.run([gphoto2, "--camera", model, "--port", f"ptpip:127.0.0.1:{port}:{port}",
                        f"--capture-movie={seconds}s", "--stdout"], capture_output=True, timeout=seconds + 60,
                       env={**os.environ, "HOME": home, "LANG": "C"})
    elapsed = time.monotonic() - t0
    frames = r.stdout.count(b"\xff\xd8\xff")
    return frames / min(elapsed, float(seconds))


def run(seconds: float = 2.0, rounds: int = 5) -> None:
    work = tempfile.mkdtemp(prefix="bench-live-")
    try:
        frame = draw_live_frame(640, 480, 1, ViewSettings())
        path = os.path.join(work, "frame.jpg")
        with open(path, "wb") as f:
            f.write(frame)
        rows, verdicts = [], []
        for profile, code, extra, model in PATHS:
            req, resp = _sizes(code, len(frame), extra)
            pong_port, port = c.free_port(), c.free_port()
            pong = c.start("pong-server", str(pong_port), str(req), str(resp), cpu=0)
            root = os.path.join(work, profile)
            os.makedirs(root)
            responder = c.start("liveview-responder", root, str(port), profile, path, cpu=0)
            c.wait_port(pong_port)
            c.wait_port(port)
            bares, ours = [], []
            for _ in range(rounds):
                _, _, out = c.timed_run([sys.executable, "-m", "bench.procs", "pong-client", str(pong_port),
                                         str(req), str(resp), str(seconds)], cpu=1)
                n, secs = out.split()[:2]
                bares.append(int(n) / float(secs))
                _, _, out = c.timed_run([sys.executable, "-m", "bench.procs", "ptpip-liveview", str(port),
                                         str(seconds)], cpu=1)
                n, secs = out.split()[:2]
                ours.append(int(n) / float(secs))
            bare, mine = max(bares), max(ours)
            ratio = mine / bare
            rows += [(f"{profile}: bare ping-pong", f"{bare:.0f} round trips/s ({req} B, {resp} B)"),
                     (f"{profile}: 0x{code:04X} through our initiator", f"{mine:.0f} frames/s"),
                     (f"{profile}: ratio ours / bare", f"{ratio:.2f}")]
            verdicts.append(c.check(ratio >= 0.7, f"{profile}: ≥ 0.7× the bare ping-pong ({ratio:.2f}×)"))
            if model is not None:
                home = os.path.join(work, f"home-{profile}")
                os.makedirs(home)
                gp = max(_gphoto2_fps(model, port, int(seconds), home) for _ in range(2))
                share = gp / mine
                rows += [(f"{profile}: gphoto2 --capture-movie", f"{gp:.0f} frames/s"),
                         (f"{profile}: ratio gphoto2 / our initiator, same responder", f"{share:.2f}")]
                verdicts.append(c.check(share < 1.0, f"{profile}: gphoto2 sets the pace, not the responder "
                                                     f"(it reaches {share:.2f}× what the responder serves)"))
            c.stop(pong)
            c.stop(responder)
        c.record(f"PTP-IP live view ({len(frame)} B frames, 640x480)", rows, verdicts)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    run()


if __name__ == "__main__":
    main()
