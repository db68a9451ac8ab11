"""Authentication with twisted.cred: a realm whose avatars are CCCP users."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.cred import checkers, credentials, portal
from zope.interface import Attribute, Interface, implementer

from .interfaces import ICamera, IMediaStore, ITapeDeck


class ICCCPUser(Interface):
    """What a logged-in user may reach."""

    name = Attribute("The avatar id (user name), or 'anonymous'.")
    anonymous = Attribute("True for anonymous access.")
    store = Attribute("The IMediaStore, or None.")
    camera = Attribute("The ICamera, or None.")
    deck = Attribute("The ITapeDeck, or None.")
    may_store = Attribute("Whether STOR is allowed.")


@implementer(ICCCPUser)
@dataclass
class CCCPUser:
    name: str
    anonymous: bool
    store: IMediaStore | None
    camera: ICamera | None
    deck: ITapeDeck | None
    may_store: bool


@implementer(portal.IRealm)
class CCCPRealm:
    """Every user reaches the same devices; anonymous users may not STOR unless allowed.

    :param read_only: nobody may STOR, whatever the store (a folder, a bridged camera).
    """

    def __init__(self, store: IMediaStore | None = None, camera: ICamera | None = None,
                 deck: ITapeDeck | None = None, anonymous_may_store: bool = False,
                 read_only: bool = False) -> None:
        self.store = store
        self.camera = camera
        self.deck = deck
        self.anonymous_may_store = anonymous_may_store
        self.read_only = read_only

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> tuple[Any, Any, Callable[[], None]]:
        if ICCCPUser not in interfaces:
            raise NotImplementedError("only ICCCPUser avatars")
        anonymous = avatarId is checkers.ANONYMOUS
        name = "anonymous" if anonymous else (avatarId.decode() if isinstance(avatarId, bytes) else str(avatarId))
        writable = bool(self.store is not None and self.store.writable and not self.read_only and
                        (not anonymous or self.anonymous_may_store))
        return ICCCPUser, CCCPUser(name, anonymous, self.store, self.camera, self.deck, writable), lambda: None


def make_portal(realm: CCCPRealm, checker_list: list[Any], anonymous: bool) -> portal.Portal:
    """A portal with the given checkers, plus anonymous access when *anonymous*."""
    cs = list(checker_list)
    if anonymous:
        cs.append(checkers.AllowAnonymousAccess())
    return portal.Portal(realm, cs)


__all__ = ["CCCPRealm", "CCCPUser", "ICCCPUser", "credentials", "make_portal"]
