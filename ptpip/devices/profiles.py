"""Camera personalities: how a virtual camera presents itself to a vendor's driver.

``generic`` (the default) is a standard PTP camera. ``canon-eos`` and ``nikon`` are
the dialects libgphoto2 speaks to those makers' cameras over Wi-Fi: their DeviceInfo,
vendor operations, properties and event flow. :func:`get_profile` makes one by name.
"""

from __future__ import annotations

from collections.abc import Callable

from .personality import HeldObject, Profile, VendorSession


def _generic() -> Profile:
    return Profile()


def _canon_eos() -> Profile:
    from .canon_eos import canon_eos
    return canon_eos()


def _canon_eos_classic() -> Profile:
    from .canon_eos import canon_eos
    return canon_eos("Canon EOS 5D Mark II", release_on_off=False)


def _nikon() -> Profile:
    from .nikon import nikon
    return nikon()


def _fuji() -> Profile:
    from .fuji import fuji
    return fuji()


#: Profile makers by the name ``--profile`` takes.
PROFILES: dict[str, Callable[[], Profile]] = {
    "generic": _generic,
    "canon-eos": _canon_eos,
    "canon-eos-classic": _canon_eos_classic,
    "nikon": _nikon,
    "fuji": _fuji,
}


def get_profile(name: str) -> Profile:
    """A fresh profile by name (KeyError, naming the known ones, for any other)."""
    try:
        maker = PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})") from None
    return maker()


def describe_profiles() -> str:
    """What ``--profile help`` prints: each profile, and the model gphoto2 needs for it."""
    lines = ["Profiles (--profile NAME):"]
    for name in PROFILES:
        p = get_profile(name)
        lines += [f"  {name:18} {p.summary}", f"  {'':18} gphoto2 --camera \"{p.gphoto2_model}\""]
    return "\n".join(lines)


__all__ = ["PROFILES", "HeldObject", "Profile", "VendorSession", "describe_profiles", "get_profile"]
