"""What independent tools say about a recorded transport stream: tshark's MP2T expert
findings, ffmpeg's decode errors, tstools' PCR timing, and which picture of a source clip
each decoded frame is (ffmpeg's showinfo checksums)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from cccp.wire.media import NULL_PID, TS_PACKET, ts_pid

FFMPEG = shutil.which("ffmpeg")
TSHARK = shutil.which("tshark")
TSREPORT = shutil.which("tsreport")

_SHOWINFO = re.compile(r"n:\s*\d+ pts:\s*-?\d+ pts_time:(\S+) .*? type:(\w) checksum:([0-9A-F]+)")


@dataclass
class Frame:
    pts: float              # seconds on the recording's timeline
    kind: str               # I, P or B
    checksum: str
    pos: float | None = None  # seconds into the source clip of the same picture


def frames(path: str, *args: str) -> list[Frame]:
    """Every decoded video frame of *path* in display order (ffmpeg showinfo)."""
    assert FFMPEG, "ffmpeg is needed (.ci/run installs it)"
    r = subprocess.run([FFMPEG, "-hide_banner", "-nostats", *args, "-i", path, "-map", "0:v", "-vf", "showinfo",
                        "-f", "null", "-"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return [Frame(float(t), k, c) for t, k, c in _SHOWINFO.findall(r.stderr)]


def picture_map(clip: str) -> dict[str, float]:
    """Checksum -> position (s) of each picture of a clip whose pictures all differ."""
    found = frames(clip)
    start = found[0].pts
    pictures = {f.checksum: round(f.pts - start, 3) for f in found}
    assert len(pictures) == len(found), "the clip's pictures must all differ"
    return pictures


def cut_at_last_picture(path: str) -> None:
    """Drop the tail of a recording that was stopped (ABOR) in the middle of a picture: a
    decoder would rightly call that picture damaged."""
    from cccp.wire.ts import Programme, pusi
    data = open(path, "rb").read()
    prog = Programme()
    last = len(data) - len(data) % TS_PACKET
    for i in range(0, last, TS_PACKET):
        p = data[i:i + TS_PACKET]
        prog.see(p)
        if ts_pid(p) == prog.video_pid and pusi(p):
            last_start = i
    if prog.video_pid is not None:
        with open(path, "r+b") as f:
            f.truncate(last_start)


def null_share(data: bytes) -> float:
    n = len(data) // TS_PACKET
    nulls = sum(1 for i in range(n) if ts_pid(data[i * TS_PACKET:i * TS_PACKET + 3] + b"\0" * 185) == NULL_PID)
    return nulls / max(1, n)


def tshark_findings(path: str) -> str:
    """tshark's expert summary of the MP2T dissector (empty when it has nothing to say)."""
    assert TSHARK, "tshark is needed (.ci/run installs it)"
    r = subprocess.run([TSHARK, "-r", path, "-q", "-z", "expert"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return "\n".join(line for line in r.stdout.splitlines() if line.strip() and not line.startswith("=")
                     and "Frequency" not in line)


def ffmpeg_errors(path: str) -> str:
    assert FFMPEG
    r = subprocess.run([FFMPEG, "-v", "error", "-i", path, "-f", "null", "-"], capture_output=True, text=True,
                       timeout=300)
    return r.stderr.strip()


def pcr_discontinuities(path: str) -> list[str]:
    """What tstools' ``tsreport -timing`` reports as PCR discontinuities."""
    assert TSREPORT, "tsreport is needed (Debian package tstools; .ci/run installs it)"
    r = subprocess.run([TSREPORT, "-timing", path], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert " .. PCR " in r.stdout, r.stdout[-2000:]            # it did read the PCRs
    return [line for line in r.stdout.splitlines() if "iscontinuit" in line]


def assert_one_valid_stream(path: str, as_stored: int = 0) -> bytes:
    """The checks every recording of the deck passes; its bytes. The first *as_stored*
    bytes may be a stored file sent as it is (its own padding included): the rest has
    fewer than 5 % null packets."""
    data = open(path, "rb").read()
    assert len(data) > 100 * TS_PACKET
    as_stored -= as_stored % TS_PACKET
    assert null_share(data[as_stored:]) < 0.05
    findings = tshark_findings(path)
    assert "missing TS frames" not in findings and "Error" not in findings, findings
    errors = ffmpeg_errors(path)
    assert errors == "", errors[:2000]
    assert pcr_discontinuities(path) == []
    return data


@dataclass
class Run:
    """Consecutive frames of one kind: ``normal`` (the programme at speed 1), ``shuttle``
    (I-frames of changing pictures) or ``still`` (one picture held)."""

    kind: str
    frames: list[Frame]

    @property
    def span(self) -> float:
        return self.frames[-1].pts - self.frames[0].pts

    @property
    def slope(self) -> float:
        """Source seconds per second of the recording, end to end."""
        a, b = self.frames[0], self.frames[-1]
        assert a.pos is not None and b.pos is not None
        return (b.pos - a.pos) / (b.pts - a.pts) if b.pts > a.pts else 0.0


def runs(found: list[Frame]) -> list[Run]:
    """Split frames (mapped to positions) into runs: an I-frame followed by P or B frames
    is normal play; one whose picture its neighbour repeats is a still; any other is a
    shuttle frame."""
    out: list[Run] = []
    for i, f in enumerate(found):
        before = found[i - 1] if i else None
        after = found[i + 1] if i + 1 < len(found) else None
        if f.kind != "I" or (after is not None and after.kind != "I"):
            kind = "normal"
        elif (before is not None and before.pos == f.pos) or (after is not None and after.pos == f.pos):
            kind = "still"
        else:
            kind = "shuttle"
        if out and out[-1].kind == kind:
            out[-1].frames.append(f)
        else:
            out.append(Run(kind, [f]))
    return out
