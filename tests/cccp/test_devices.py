"""The virtual devices and the jailed file store, with task.Clock for the tape."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
from twisted.internet import task
from zope.interface.verify import verifyObject

from cccp.commands import parse_number
from cccp.devices import FileMediaStore, VirtualCamera, VirtualTapeDeck
from cccp.errors import FileUnavailable, NotImplementedHere, RemoteProtocolError, SyntaxErrorInArguments
from cccp.interfaces import ICamera, IMediaSource, IMediaStore, IRecording, ITapeDeck
from cccp.realm import CCCPRealm, CCCPUser, ICCCPUser


def test_providers_implement_their_interfaces(tmp_path):
    (tmp_path / "a.ts").write_bytes(b"x")
    store = FileMediaStore(str(tmp_path))
    assert verifyObject(IMediaStore, store)
    assert verifyObject(ICamera, VirtualCamera())
    assert verifyObject(ITapeDeck, VirtualTapeDeck(clock=task.Clock()))
    assert verifyObject(IMediaSource, store.open("/a.ts"))
    rec = store.receive("/b.ts")
    assert verifyObject(IRecording, rec)
    rec.abort()
    assert verifyObject(ICCCPUser, CCCPUser("x", False, store, None, None, True))


def test_tape_moves_in_real_time_and_stops_at_the_stop_position():
    clock = task.Clock()
    deck = VirtualTapeDeck(100, clock=clock)
    deck.play(Decimal(10), Decimal(2))
    clock.advance(2)
    assert deck.state() == ("PLAY", Decimal("4.000"))
    clock.advance(10)
    assert deck.state() == ("PAUS", Decimal("10.000"))


def test_fast_forward_default_speed_and_rewind():
    clock = task.Clock()
    deck = VirtualTapeDeck(100, clock=clock)
    deck.fastForward()
    clock.advance(4)
    assert deck.state() == ("FF", Decimal("20.000"))
    deck.fastForward(Decimal(5), Decimal(-10))          # rewind to 5
    clock.advance(1)
    assert deck.state() == ("FF", Decimal("10.000"))
    clock.advance(5)
    assert deck.state() == ("PAUS", Decimal("5.000"))


def test_tape_stops_at_either_end():
    clock = task.Clock()
    deck = VirtualTapeDeck(30, clock=clock)
    deck.play()
    clock.advance(100)
    assert deck.state() == ("PAUS", Decimal("30.000"))
    deck.play(None, Decimal(-1))
    clock.advance(100)
    assert deck.state() == ("PAUS", Decimal("0.000"))


def test_stop_behind_the_position_ends_the_command_at_once():
    clock = task.Clock()
    deck = VirtualTapeDeck(100, clock=clock)
    deck.fastForward(Decimal(50))
    clock.advance(20)
    deck.play(Decimal(20))               # 50 is past 20 when playing forward
    assert deck.state() == ("PAUS", Decimal("50.000"))


def test_pause_and_record():
    clock = task.Clock()
    deck = VirtualTapeDeck(100, clock=clock)
    seen = []
    deck.listeners.append(lambda op, pos: seen.append(op))
    deck.record()
    clock.advance(3)
    deck.pause()
    clock.advance(3)
    assert deck.state() == ("PAUS", Decimal("3.000"))
    assert seen == ["RECO", "PAUS"]
    with pytest.raises(SyntaxErrorInArguments):
        deck.play(None, Decimal(0))


def test_camera_clamps_and_steps():
    cam = VirtualCamera({"ZOOM": (1, 10, 0.5, 1), "PAN": (-90, 90, 5, 0)})
    assert cam.controls() == ["ZOOM", "PAN"]
    assert cam.control("ZOOM", parse_number("+")) == Decimal("1.5")
    assert cam.control("ZOOM", parse_number("+100")) == 10
    assert cam.control("PAN", parse_number("-")) == -5
    assert cam.status("PAN") == (-90, -5, 90)
    with pytest.raises(NotImplementedHere):
        cam.control("TILT", parse_number("1"))
    with pytest.raises(ValueError):
        VirtualCamera({"WARP": (0, 1, 1, 0)})
    with pytest.raises(ValueError):
        VirtualCamera({"ZOOM": (1, 10, 1, 20)})


def test_store_is_jailed(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_bytes(b"s")
    os.symlink(str(tmp_path / "secret"), str(root / "link"))
    store = FileMediaStore(str(root))
    assert store.isdir("/") and store.isdir("/sub") and store.isdir("/../..")   # .. stops at the root
    for bad in ("/link", "/sub/../../secret"):
        with pytest.raises(FileUnavailable):
            store.open(bad)
    assert [e.name for e in store.listdir("/")] == ["sub"]


def test_recording_lands_atomically_or_not_at_all(tmp_path):
    store = FileMediaStore(str(tmp_path))
    rec = store.receive("/clip.ts")
    rec.write(b"\x47" * 188)
    assert os.listdir(tmp_path) != ["clip.ts"] and not os.path.exists(tmp_path / "clip.ts")
    assert store.listdir("/") == []                 # the temporary file is invisible
    rec.commit()
    assert (tmp_path / "clip.ts").read_bytes() == b"\x47" * 188
    rec2 = store.receive("/other.ts")
    rec2.write(b"x")
    rec2.abort()
    assert sorted(os.listdir(tmp_path)) == ["clip.ts"]
    with pytest.raises(RemoteProtocolError) as e:
        store.receive("/missing-folder/x.ts")
    assert e.value.code == 553
    ro = FileMediaStore(str(tmp_path), writable=False)
    with pytest.raises(RemoteProtocolError):
        ro.receive("/y.ts")


def test_realm_permissions(tmp_path):
    from twisted.cred.checkers import ANONYMOUS
    store = FileMediaStore(str(tmp_path))
    realm = CCCPRealm(store, None, None)
    _, anon, _ = realm.requestAvatar(ANONYMOUS, None, ICCCPUser)
    _, bob, _ = realm.requestAvatar(b"bob", None, ICCCPUser)
    assert anon.anonymous and not anon.may_store
    assert bob.name == "bob" and bob.may_store
    _, anon2, _ = CCCPRealm(store, anonymous_may_store=True).requestAvatar(ANONYMOUS, None, ICCCPUser)
    assert anon2.may_store
    _, bob2, _ = CCCPRealm(store, read_only=True).requestAvatar(b"bob", None, ICCCPUser)
    assert not bob2.may_store
