"""The bridge's shared viewfinder (cccp.camera_live.CameraViewfinder), with a stand-in
for the PTP-IP client: a start that fails does not wedge it, viewers who come while it
switches off get a live view again, and one viewer's failure is not the others'."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer, task

from cccp.camera_live import CameraViewfinder, Viewer


class FakeView:
    """What PTPClient.liveview() returns: frames on demand, switched off on exit."""

    def __init__(self, camera: FakeCamera) -> None:
        self.camera = camera

    async def __aenter__(self) -> FakeView:
        self.camera.on += 1
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await task.deferLater(self.camera.reactor, 0.05, lambda: None)    # switching off takes a while
        self.camera.on -= 1

    def __aiter__(self) -> FakeView:
        return self

    async def __anext__(self) -> bytes:
        await task.deferLater(self.camera.reactor, 0.01, lambda: None)
        self.camera.frames += 1
        return b"\xff\xd8frame%d\xff\xd9" % self.camera.frames


class FakeCamera:
    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.on = 0
        self.frames = 0

    def liveview(self, reactor: Any) -> FakeView:
        return FakeView(self)


class Watcher(Viewer):
    def __init__(self, fail_after: int = 0) -> None:
        self.frames: list[bytes] = []
        self.end: defer.Deferred[Any] = defer.Deferred()
        self.fail_after = fail_after

    def frame(self, jpeg: bytes) -> None:
        self.frames.append(jpeg)
        if self.fail_after and len(self.frames) >= self.fail_after:
            raise RuntimeError("this viewer broke")

    def ended(self, failure: Any) -> None:
        if not self.end.called:
            self.end.callback([failure])          # (a Failure itself would errback)


async def _until(reactor: Any, check: Any) -> None:
    for _ in range(300):
        if check():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("never happened")


@pytest_twisted.ensureDeferred
async def test_a_start_that_fails_does_not_wedge_the_viewfinder(reactor):
    camera: list[Any] = [None]
    vf = CameraViewfinder(reactor, lambda: camera[0])
    first = Watcher()
    vf.subscribe(first)
    (failure,) = await first.end
    assert failure is not None and "not connected" in failure.getErrorMessage()
    camera[0] = FakeCamera(reactor)                        # the camera is back
    second = Watcher()
    leave = vf.subscribe(second)
    await _until(reactor, lambda: len(second.frames) >= 3)
    leave()
    await _until(reactor, lambda: camera[0].on == 0)


@pytest_twisted.ensureDeferred
async def test_a_viewer_who_comes_while_it_switches_off_gets_live_view_again(reactor):
    cam = FakeCamera(reactor)
    vf = CameraViewfinder(reactor, lambda: cam)
    a = Watcher()
    leave = vf.subscribe(a)
    await _until(reactor, lambda: a.frames)
    leave()
    await _until(reactor, lambda: vf._running is not None and not vf.viewers and cam.frames > len(a.frames))
    b = Watcher()                                          # during the switch-off
    leave_b = vf.subscribe(b)
    await _until(reactor, lambda: len(b.frames) >= 3)
    assert not b.end.called and vf.sessions == 2
    leave_b()
    await _until(reactor, lambda: cam.on == 0)


@pytest_twisted.ensureDeferred
async def test_one_viewer_failing_on_a_frame_leaves_the_others_watching(reactor):
    cam = FakeCamera(reactor)
    vf = CameraViewfinder(reactor, lambda: cam)
    bad, good = Watcher(fail_after=2), Watcher()
    vf.subscribe(bad)
    leave = vf.subscribe(good)
    (failure,) = await bad.end
    assert failure is not None and "broke" in failure.getErrorMessage()
    await _until(reactor, lambda: len(good.frames) >= 5)
    assert not good.end.called
    leave()
    await _until(reactor, lambda: cam.on == 0)
