"""``cccp://`` URLs: RFC 1738 FTP URL rules with the ``cccp`` scheme (draft section 6).

The draft leaves the default port to IANA; we use 5021 (:data:`DEFAULT_PORT`),
configurable everywhere a URL is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .commands import DEFAULT_PORT
from .errors import LocalProtocolError


@dataclass(frozen=True)
class CCCPURL:
    host: str
    port: int = DEFAULT_PORT
    user: str | None = None
    password: str | None = None
    #: The path as the server sees it (segments unquoted, leading "/" kept).
    path: str = "/"
    #: The ";type=" code (a, i or d), if given.
    typecode: str | None = None

    def __str__(self) -> str:
        from urllib.parse import quote
        auth = ""
        if self.user is not None:
            auth = quote(self.user, safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        port = "" if self.port == DEFAULT_PORT else f":{self.port}"
        tail = f";type={self.typecode}" if self.typecode else ""
        return f"cccp://{auth}{self.host}{port}{quote(self.path)}{tail}"


def parse_url(url: str, default_port: int = DEFAULT_PORT) -> CCCPURL:
    """Parse ``cccp://[user[:password]@]host[:port]/path[;type=X]``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "cccp":
        raise LocalProtocolError(f"not a cccp:// URL: {url!r}")
    if not parts.hostname:
        raise LocalProtocolError(f"no host in {url!r}")
    try:
        port = parts.port or default_port
    except ValueError:
        raise LocalProtocolError(f"bad port in {url!r}") from None
    path, typecode = parts.path or "/", None
    if ";type=" in path.lower():
        i = path.lower().rindex(";type=")
        path, typecode = path[:i], path[i + 6:].lower()
        if typecode not in ("a", "i", "d"):
            raise LocalProtocolError(f"bad ;type={typecode} in {url!r}")
    segments = [unquote(s) for s in path.split("/")]
    if any("/" in s for s in segments[1:]):
        raise LocalProtocolError("a path segment cannot contain an encoded '/'")
    return CCCPURL(parts.hostname, port, unquote(parts.username) if parts.username is not None else None,
                   unquote(parts.password) if parts.password is not None else None,
                   "/".join(segments) or "/", typecode)
