"""Initiator policies: which initiators may connect (device bonding, spec 5.3).

Refusals are answered with Init Fail REJECTED_INITIATOR by the responder.
GUID files hold one GUID per line as 32 hex digits (dashes allowed), ``#`` comments.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable

from twisted.logger import Logger
from zope.interface import implementer

from ..interfaces import IInitiatorInfo, IInitiatorPolicy
from ..wire.constants import ANONYMOUS_GUID


def parse_guid(text: str) -> bytes:
    raw = bytes.fromhex(text.strip().replace("-", "").replace(":", ""))
    if len(raw) != 16:
        raise ValueError(f"a GUID is 16 bytes, not {len(raw)}: {text!r}")
    return raw


def read_guids(path: str) -> set[bytes]:
    """The GUIDs listed in *path* (missing file: none)."""
    out: set[bytes] = set()
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.split("#", 1)[0].strip()
                if line:
                    try:
                        out.add(parse_guid(line))
                    except ValueError as e:
                        raise ValueError(f"{path}:{n}: {e}") from None
    except FileNotFoundError:
        pass
    return out


def write_guids(path: str, guids: Iterable[bytes], comment: str = "") -> None:
    """Write the list atomically (temporary file, then rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".guids-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        if comment:
            f.write(f"# {comment}\n")
        for g in sorted(guids):
            f.write(g.hex() + "\n")
    os.replace(tmp, path)


@implementer(IInitiatorPolicy)
class AcceptAllPolicy:
    """Accept every initiator; the anonymous all-0xFF GUID only if *anonymous*."""

    def __init__(self, anonymous: bool = True) -> None:
        self.anonymous = anonymous

    def accept(self, initiator: IInitiatorInfo) -> bool:
        return self.anonymous or initiator.guid != ANONYMOUS_GUID


@implementer(IInitiatorPolicy)
class AllowListPolicy:
    """Accept only the GUIDs listed in a file (re-read when it changes)."""

    log = Logger()

    def __init__(self, path: str, anonymous: bool = False) -> None:
        self.path = path
        self.anonymous = anonymous
        self._mtime: float | None = None
        self._guids: set[bytes] = set()
        self._load()

    def _load(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            self._guids = read_guids(self.path)
            self._mtime = mtime

    @property
    def guids(self) -> set[bytes]:
        self._load()
        return set(self._guids)

    def accept(self, initiator: IInitiatorInfo) -> bool:
        if initiator.guid == ANONYMOUS_GUID:
            return self.anonymous
        return initiator.guid in self.guids


@implementer(IInitiatorPolicy)
class PairingPolicy(AllowListPolicy):
    """Pairing mode, as cameras pair: the next *pairs* new initiators are accepted and
    remembered in the file; after that only remembered ones are."""

    def __init__(self, path: str, pairs: int = 1, anonymous: bool = False) -> None:
        super().__init__(path, anonymous)
        self.pairs = pairs

    def accept(self, initiator: IInitiatorInfo) -> bool:
        if initiator.guid == ANONYMOUS_GUID:
            return self.anonymous
        known = self.guids
        if initiator.guid in known:
            return True
        if self.pairs <= 0:
            return False
        self.pairs -= 1
        known.add(initiator.guid)
        write_guids(self.path, known, "initiators paired with this responder")
        self._load()
        self.log.info("paired with initiator {guid} ({name!r}); {left} pairing(s) left",
                      guid=initiator.guid.hex(), name=initiator.friendly_name, left=self.pairs)
        return True
