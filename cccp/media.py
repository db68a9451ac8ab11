"""MPEG2-TS and RTP framing facts and the sample clip shipped with the package."""

from __future__ import annotations

from importlib import resources

TS_PACKET = 188
TS_SYNC = 0x47


def sample_clip_path() -> str | None:
    """The small MPEG2-TS sample shipped with the package, if present."""
    folder = resources.files("cccp") / "samples"
    try:
        for p in sorted(folder.iterdir(), key=lambda p: p.name):
            if p.name.endswith(".ts"):
                return str(p)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None
