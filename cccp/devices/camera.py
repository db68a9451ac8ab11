"""A virtual pan/tilt/zoom camera behind :class:`~cccp.interfaces.ICamera`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from zope.interface import implementer

from ..interfaces import ICamera
from ..wire.commands import CAMERA_CONTROLS, Number
from ..wire.errors import NotImplementedHere


@dataclass
class Axis:
    minimum: Decimal
    maximum: Decimal
    step: Decimal
    value: Decimal


#: Defaults of the virtual PTZ camera: (min, max, small step, initial).
DEFAULT_AXES: dict[str, tuple[float, float, float, float]] = {
    "IRIS": (0, 100, 5, 50),         # percent open
    "SENS": (0, 100, 5, 50),         # percent gain
    "ZOOM": (1, 20, 0.5, 1),         # optical magnification
    "FOCU": (0.1, 100, 0.5, 10),     # metres
    "PAN": (-170, 170, 1, 0),        # degrees, positive: view moves right
    "TILT": (-30, 90, 1, 0),         # degrees, positive: view moves up
    "ROLL": (-180, 180, 1, 0),       # degrees, clockwise seen from behind
    "HORI": (-1000, 1000, 10, 0),    # millimetres on the rail
    "VERT": (-500, 500, 10, 0),
    "DEPT": (-1000, 1000, 10, 0),
}


@implementer(ICamera)
class VirtualCamera:
    """A pan/tilt/zoom camera with configurable ranges and steps; values clamp to the range.

    :param axes: ``{name: (min, max, step, initial)}`` for the controls it has.
    """

    def __init__(self, axes: dict[str, tuple[float, float, float, float]] | None = None) -> None:
        spec = DEFAULT_AXES if axes is None else axes
        self._axes: dict[str, Axis] = {}
        for name in CAMERA_CONTROLS:          # keep the CSTA order whatever the mapping's order
            if name in spec:
                lo, hi, step, init = (Decimal(str(v)) for v in spec[name])
                if not lo <= init <= hi or step <= 0:
                    raise ValueError(f"bad range for {name}: {spec[name]}")
                self._axes[name] = Axis(lo, hi, step, init)
        unknown = set(spec) - set(CAMERA_CONTROLS)
        if unknown:
            raise ValueError(f"unknown camera controls: {sorted(unknown)}")
        self.listeners: list[Callable[[str, Decimal], Any]] = []

    def controls(self) -> list[str]:
        return list(self._axes)

    def _axis(self, name: str) -> Axis:
        axis = self._axes.get(name)
        if axis is None:
            raise NotImplementedHere(f"{name} is not supported by this camera")
        return axis

    def status(self, name: str) -> tuple[Decimal, Decimal, Decimal]:
        a = self._axis(name)
        return a.minimum, a.value, a.maximum

    def control(self, name: str, number: Number) -> Decimal:
        a = self._axis(name)
        target = number.apply(a.value, a.step)
        a.value = min(max(target, a.minimum), a.maximum)
        for listener in list(self.listeners):
            listener(name, a.value)
        return a.value
