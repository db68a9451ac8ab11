"""Standard PTP device properties with the datatypes and forms real cameras use."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from ..interfaces import IDeviceProperties
from ..wire.constants import STREAM_VIDEO, DataType, ResponseCode
from ..wire.constants import DevicePropCode as P
from ..wire.datasets import FORM_ENUM, FORM_NONE, FORM_RANGE, DevicePropDesc
from ..wire.errors import OperationError

ALL_PROPERTIES = 0xFFFFFFFF


@dataclass
class Property:
    """One property: its description and current value."""

    code: int
    datatype: int
    default: Any
    writable: bool = True
    form: int = FORM_NONE
    range: tuple[int, int, int] | None = None
    enumeration: tuple[Any, ...] = ()
    value: Any = None
    #: Computes the value on every read (DateTime); set() then stores an offset.
    dynamic: Callable[[Property], Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.value is None:
            self.value = self.default

    def desc(self) -> DevicePropDesc:
        current = self.dynamic(self) if self.dynamic else self.value
        default = self.dynamic(self) if self.dynamic and self.datatype == DataType.STR else self.default
        return DevicePropDesc(self.code, self.datatype, self.writable, default, current,
                              self.form, self.range, self.enumeration)


def _enum(code: int, datatype: int, default: Any, values: tuple[Any, ...], writable: bool = True) -> Property:
    return Property(code, datatype, default, writable, FORM_ENUM, enumeration=values)


def _range(code: int, datatype: int, default: int, lo: int, hi: int, step: int,
            writable: bool = True) -> Property:
    return Property(code, datatype, default, writable, FORM_RANGE, range=(lo, hi, step))


def _now(prop: Property) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.localtime(time.time() + (prop.value or 0)))


#: f-numbers ×100 in third stops from f/2.8 to f/22.
F_NUMBERS = (280, 320, 350, 400, 450, 500, 560, 630, 710, 800, 900, 1000, 1100, 1300, 1400, 1600, 1800, 2000, 2200)
#: ISO speeds.
ISO_SPEEDS = (100, 125, 160, 200, 250, 320, 400, 500, 640, 800, 1000, 1250, 1600, 3200, 6400)
#: Exposure times in units of 1/10000 s, 1/4000 s .. 30 s.
EXPOSURE_TIMES = (3, 5, 10, 20, 40, 80, 166, 333, 666, 1250, 2500, 5000, 10000, 20000, 40000, 80000,
                  150000, 300000)
#: Exposure bias in thousandths of a stop, third stops ±3.
EXPOSURE_BIAS = tuple(round(i * 1000 / 3) for i in range(-9, 10))


def standard_properties() -> list[Property]:
    """A realistic set of the standard properties of a compact camera."""
    return [
        _range(P.BatteryLevel, DataType.UINT8, 100, 0, 100, 1, writable=False),
        _enum(P.ImageSize, DataType.STR, "1600x1200", ("640x480", "1024x768", "1600x1200", "2048x1536")),
        _enum(P.CompressionSetting, DataType.UINT8, 8, (2, 4, 8)),
        _enum(P.WhiteBalance, DataType.UINT16, 2, (1, 2, 4, 5, 6, 7)),
        _enum(P.FNumber, DataType.UINT16, 560, F_NUMBERS),
        _range(P.FocalLength, DataType.UINT32, 3500, 1800, 10500, 100),
        _range(P.FocusDistance, DataType.UINT16, 0xFFFF, 100, 0xFFFF, 1),
        _enum(P.FocusMode, DataType.UINT16, 2, (1, 2, 3)),
        _enum(P.FlashMode, DataType.UINT16, 2, (1, 2, 3, 4)),
        _enum(P.ExposureTime, DataType.UINT32, 80, EXPOSURE_TIMES),
        _enum(P.ExposureProgramMode, DataType.UINT16, 2, (1, 2, 3, 4)),
        _enum(P.ExposureIndex, DataType.UINT16, 200, ISO_SPEEDS),
        _enum(P.ExposureBiasCompensation, DataType.INT16, 0, EXPOSURE_BIAS),
        Property(P.DateTime, DataType.STR, "", True, FORM_NONE, value=0.0, dynamic=_now),
        _enum(P.CaptureDelay, DataType.UINT32, 0, (0, 2000, 10000)),
        _enum(P.StillCaptureMode, DataType.UINT16, 1, (1,)),
        _range(P.Contrast, DataType.UINT8, 128, 0, 255, 1),
        _range(P.Sharpness, DataType.UINT8, 128, 0, 255, 1),
        _range(P.DigitalZoom, DataType.UINT8, 10, 10, 40, 1),
    ]


def stream_properties() -> list[Property]:
    """The PTP 1.1 stream properties of a camera with live view: video only (libgphoto2
    reads both as UINT32 and enables video with 1)."""
    return [
        _enum(P.SupportedStreams, DataType.UINT32, STREAM_VIDEO, (STREAM_VIDEO,), writable=False),
        _enum(P.EnabledStreams, DataType.UINT32, 0, (0, STREAM_VIDEO)),
    ]


def _parse_datetime(text: str) -> float:
    base = text.split(".")[0].rstrip("Z")
    for sign in "+-":
        if sign in base[9:]:
            base = base[:9] + base[9:].split(sign)[0]
    return time.mktime(time.strptime(base[:15], "%Y%m%dT%H%M%S"))


@implementer(IDeviceProperties)
class DeviceProperties:
    """Device properties held in memory; changes are announced to listeners."""

    log = Logger()

    def __init__(self, properties: list[Property] | None = None) -> None:
        props = standard_properties() if properties is None else properties
        self._props = {p.code: p for p in props}
        self._listeners: list[Callable[[int], Any]] = []

    def _prop(self, code: int) -> Property:
        p = self._props.get(code)
        if p is None:
            raise OperationError(ResponseCode.DevicePropNotSupported, f"property 0x{code:04X}")
        return p

    def supported(self) -> list[int]:
        return list(self._props)

    def describe(self, code: int) -> DevicePropDesc:
        return self._prop(code).desc()

    def get(self, code: int) -> Any:
        p = self._prop(code)
        return p.dynamic(p) if p.dynamic else p.value

    def set(self, code: int, value: Any) -> None:
        p = self._prop(code)
        if not p.writable:
            raise OperationError(ResponseCode.AccessDenied, f"property 0x{code:04X} is read-only")
        if p.dynamic is not None:          # DateTime: keep the offset from the clock
            try:
                value = _parse_datetime(value) - time.time()
            except (ValueError, TypeError, AttributeError):
                raise OperationError(ResponseCode.InvalidDevicePropValue, f"bad date {value!r}") from None
        elif not p.desc().allows(value):
            raise OperationError(ResponseCode.InvalidDevicePropValue,
                                 f"{value!r} is not allowed for property 0x{code:04X}")
        changed = value != p.value
        p.value = value
        if changed or p.dynamic is not None:
            self._changed(code)

    def setInternal(self, code: int, value: Any) -> None:
        """Change a value from the device side (battery draining, a dial turned)."""
        p = self._prop(code)
        if value != p.value:
            p.value = value
            self._changed(code)

    def reset(self, code: int) -> None:
        codes = list(self._props) if code == ALL_PROPERTIES else [code]
        for c in codes:
            p = self._prop(c)
            if not p.writable:
                if code != ALL_PROPERTIES:
                    raise OperationError(ResponseCode.AccessDenied, f"property 0x{c:04X} is read-only")
                continue
            target = 0.0 if p.dynamic else p.default
            if p.value != target:
                p.value = target
                self._changed(c)

    def subscribe(self, listener: Callable[[int], Any]) -> None:
        self._listeners.append(listener)

    def _changed(self, code: int) -> None:
        for listener in list(self._listeners):
            try:
                listener(code)
            except Exception:
                self.log.failure("property listener failed")


def preset(props: DeviceProperties, values: dict[int, Any]) -> None:
    """Apply start-up values (property presets), validated like SetDevicePropValue."""
    for code, value in values.items():
        props.set(code, value)


__all__ = ["DeviceProperties", "Property", "preset", "standard_properties"]
