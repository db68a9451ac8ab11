"""The TS index of a large clip (issue 17): built in constant memory. A 4 GiB clip (a
30 s MPEG-2 clip made by ffmpeg, repeated) is indexed in 1 MiB chunks, against the same
clip at 64 MiB in the same run: the peak RSS must not grow with the size, beyond the
access points themselves (24 bytes per I-frame)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from . import common as c


def _clip(path: str, size: int, piece: bytes) -> None:
    with open(path, "wb") as f:
        written = 0
        while written < size:
            f.write(piece)
            written += len(piece)


def run(size_gib: float = 4.0) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        raise RuntimeError("ffmpeg is needed")
    work = tempfile.mkdtemp(prefix="bench-ts-")
    try:
        src = os.path.join(work, "piece.ts")
        subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=720x576:rate=25", "-f", "lavfi",
                        "-i", "sine=frequency=440:sample_rate=48000", "-t", "30", "-c:v", "mpeg2video", "-g", "12",
                        "-b:v", "8M", "-c:a", "mp2", "-f", "mpegts", src], check=True, timeout=600)
        piece = open(src, "rb").read()
        piece = piece[:len(piece) // 188 * 188]
        rows, results = [], {}
        for label, size in (("64 MiB", 64 << 20), (f"{size_gib:g} GiB", int(size_gib * (1 << 30)))):
            path = os.path.join(work, "clip.ts")
            _clip(path, size, piece)
            _, rss, out = c.timed_run([sys.executable, "-m", "bench.procs", "ts-index", path])
            points, nbytes, secs = out.split()[:3]
            results[label] = (int(points), int(nbytes), float(secs), rss)
            rows.append((f"{label}: access points, seconds, MB/s, peak RSS",
                         f"{points}, {float(secs):.1f} s, {int(nbytes) / float(secs) / 1e6:.0f} MB/s, {rss:.0f} MB"))
            os.unlink(path)
        small, large = results["64 MiB"], results[f"{size_gib:g} GiB"]
        growth = large[3] - small[3]
        allowed = 4 + large[0] * 24 / 1e6
        c.record(f"TS index of a {size_gib:g} GiB clip", rows + [("RSS growth over 64 MiB", f"{growth:.1f} MB")],
                 [c.check(growth <= allowed, f"constant memory: RSS grows {growth:.1f} MB ≤ {allowed:.1f} MB "
                                             f"(4 MB + 24 bytes per access point)")])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    run()


if __name__ == "__main__":
    main()
