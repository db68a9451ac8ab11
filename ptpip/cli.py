"""``ptpip``: a PTP-IP initiator on the command line.

    ptpip --host 192.0.2.10 info
    ptpip ls
    ptpip get --all -o photos/
    ptpip put picture.jpg --folder /DCIM
    ptpip capture --download
    ptpip props / ptpip props get FNumber / ptpip props set FNumber 800
    ptpip events
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any

from twisted.internet import defer, task
from twisted.internet import error as ierror

from .wire.constants import (
    DEFAULT_PORT,
    NO_TRANSACTION,
    DataType,
    DevicePropCode,
    EventCode,
    FailReason,
    ObjectFormat,
    code_name,
)
from .wire.datasets import FORM_ENUM, FORM_RANGE, DevicePropDesc
from .wire.errors import InitFailed, PTPIPError, PTPResponseError


class CLIError(Exception):
    """A problem to report in one line, exit status 1."""


def _fmt_format(code: int) -> str:
    try:
        return ObjectFormat(code).name
    except ValueError:
        return f"0x{code:04X}"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class ProgressBar:
    """A one-line progress bar on stderr (only on a terminal unless forced)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self.start = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        rate = done / max(now - self.start, 1e-6)
        if total:
            frac = min(done / total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"\r{self.label[:30]:30} [{bar:30}] {frac * 100:5.1f}% {_human(done)} {_human(int(rate))}/s"
        else:
            text = f"\r{self.label[:30]:30} {_human(done)} {_human(int(rate))}/s"
        sys.stderr.write(text)
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _within(folder: str, name: str) -> str:
    """*name* (a path the camera gave) under *folder*: a camera cannot make us write
    elsewhere with "..", an absolute path or an empty name."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise CLIError(f"the camera named a file {name!r}, which would land outside {folder!r}")
    return os.path.join(folder, *parts)


def _prop_code(name: str, vendor: str | None = None) -> int:
    from .wire.vendor import CanonEOSProp, NikonProp
    kinds: list[Any] = [{"canon-eos": CanonEOSProp, "nikon": NikonProp}[vendor]] if vendor else []
    for enum_type in [*kinds, DevicePropCode]:
        for member in enum_type:
            if member.name.lower() == name.lower():
                return int(member.value)
    try:
        return int(name, 0)
    except ValueError:
        raise CLIError(f"unknown property {name!r} (use a name such as FNumber or a code such as 0x5007)") from None


def _parse_value(desc: DevicePropDesc, text: str) -> Any:
    if desc.datatype == DataType.STR:
        return text
    if desc.datatype & 0x4000:
        return [int(x, 0) for x in text.split(",") if x]
    try:
        return int(text, 0)
    except ValueError:
        raise CLIError(f"{text!r} is not a number") from None


def _prop_name(code: int, vendor: str | None) -> str:
    from .vendors import vendor_prop_name
    return vendor_prop_name(code, vendor) or code_name(code)


def _desc_json(desc: DevicePropDesc, vendor: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"code": f"0x{desc.code:04X}", "name": _prop_name(desc.code, vendor),
                           "datatype": f"0x{desc.datatype:04X}", "writable": desc.writable,
                           "current": desc.current, "default": desc.default}
    if desc.form == FORM_RANGE and desc.range:
        out["range"] = {"min": desc.range[0], "max": desc.range[1], "step": desc.range[2]}
    elif desc.form == FORM_ENUM:
        out["allowed"] = list(desc.enumeration)
    return out


def _desc_text(desc: DevicePropDesc, vendor: str | None = None) -> str:
    ro = "" if desc.writable else " (read-only)"
    line = f"{_prop_name(desc.code, vendor):26} 0x{desc.code:04X} = {desc.current!r}{ro}"
    if desc.form == FORM_RANGE and desc.range:
        line += f"  range {desc.range[0]}..{desc.range[1]} step {desc.range[2]}"
    elif desc.form == FORM_ENUM:
        line += "  allowed " + ", ".join(repr(v) for v in desc.enumeration)
    return line


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


@defer.inlineCallbacks
def _run(reactor: Any, args: argparse.Namespace) -> Any:
    from .client import PTPClient
    try:
        client = yield PTPClient.connect(reactor, args.host, args.port, timeout=args.timeout,
                                         friendly_name=args.name,
                                         open_session=args.command not in ("info", "events"))
    except InitFailed as e:
        raise CLIError(f"{args.host}:{args.port} refused the connection: "
                       f"{FailReason(e.reason).name if e.reason in FailReason._value2member_map_ else e.reason}") from None
    except (ierror.ConnectError, ierror.TimeoutError, defer.TimeoutError) as e:
        raise CLIError(f"cannot reach a PTP-IP camera at {args.host}:{args.port}: {e.__class__.__name__}"
                       f"{': ' + str(e.args[0]) if getattr(e, 'args', None) and e.args[0] else ''}") from None
    try:
        yield defer.ensureDeferred(_COMMANDS[args.command](reactor, client, args))
    finally:
        if not client.session.closed:
            yield client.close()


async def cmd_info(reactor: Any, client: Any, args: argparse.Namespace) -> None:
    di = client.device_info
    s = client.session
    data = {
        "name": s.responder_name, "guid": s.responder_guid.hex(), "version": f"{s.version >> 16}.{s.version & 0xFFFF}",
        "manufacturer": di.manufacturer, "model": di.model, "device_version": di.device_version,
        "serial_number": di.serial_number, "vendor_extension_id": di.vendor_extension_id,
        "operations": [code_name(c) for c in di.operations_supported],
        "events": [code_name(c) for c in di.events_supported],
        "properties": [code_name(c) for c in di.device_properties_supported],
        "capture_formats": [_fmt_format(c) for c in di.capture_formats],
        "image_formats": [_fmt_format(c) for c in di.image_formats],
    }
    lines = [f"{k.replace('_', ' ').capitalize().replace('Guid', 'GUID'):20} "
             f"{', '.join(v) if isinstance(v, list) else v}"
             for k, v in data.items()]
    _out(args, data, "\n".join(lines))


async def cmd_ls(reactor: Any, client: Any, args: argparse.Namespace) -> None:
    entries = await client.walk()
    rows = []
    lines = []
    for path, handle, oi in entries:
        folder = oi.object_format == ObjectFormat.Association
        rows.append({"path": path, "handle": handle, "size": oi.object_compressed_size,
                     "format": _fmt_format(oi.object_format), "folder": folder,
                     "width": oi.image_pix_width, "height": oi.image_pix_height, "date": oi.capture_date})
        depth = path.count("/") - 1
        name = path.rsplit("/", 1)[-1] + ("/" if folder else "")
        size = "" if folder else _human(oi.object_compressed_size)
        dims = f"{oi.image_pix_width}x{oi.image_pix_height}" if oi.image_pix_width else ""
        lines.append(f"{handle:>8}  {'  ' * depth}{name:<{max(1, 36 - 2 * depth)}} {size:>10} {dims:>10}")
    _out(args, rows, "\n".join(lines) if lines else "(no objects)")


async def cmd_get(reactor: Any, client: Any, args: argparse.Namespace) -> None:
    entries = await client.walk()
    by_handle = {h: (p, oi) for p, h, oi in entries}
    by_path = {p: h for p, h, _ in entries}
    wanted: list[int] = []
    if args.all:
        wanted = [h for p, h, oi in entries if oi.object_format != ObjectFormat.Association]
    for item in args.objects:
        if item.isdigit() and int(item) in by_handle:
            wanted.append(int(item))
        elif "/" + item.strip("/") in by_path:
            wanted.append(by_path["/" + item.strip("/")])
        else:
            raise CLIError(f"no object {item!r} on the camera (see 'ptpip ls')")
    if not wanted:
        raise CLIError("nothing to get: name objects by handle or path, or use --all")
    os.makedirs(args.output, exist_ok=True)
    results = []
    for h in wanted:
        path, oi = by_handle[h]
        target = _within(args.output, path.lstrip("/") if args.keep_tree else oi.filename)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        bar = ProgressBar(oi.filename, args.progress)
        size = await client.download(h, target, progress=bar)
        bar.finish()
        results.append({"handle": h, "path": path, "file": target, "size": size})
        if not args.json:
            print(f"{path} -> {target} ({_human(size)})")
    if args.json:
        print(json.dumps(results, indent=2))


async def cmd_put(reactor: Any, client: Any, args: argparse.Namespace) -> None:
    parent = 0
    if args.folder and args.folder.strip("/"):
        try:
            parent = await client.findPath(args.folder)
        except FileNotFoundError:
            raise CLIError(f"no folder {args.folder!r} on the camera") from None
    out = []
    for path in args.files:
        if not os.path.isfile(path):
            raise CLIError(f"no such file: {path}")
        bar = ProgressBar(os.path.basename(path), args.progress)
        handle = await client.upload(path, parent=parent, progress=bar)
        bar.finish()
        out.append({"file": path, "handle": handle})
        if not args.json:
            print(f"{path} -> handle {handle}")
    if args.json:
        print(json.dumps(out, indent=2))


async def cmd_rm(reactor: Any, client: Any, args: argparse.Namespace) -> None:
    for item in args.objects:
        handle = int(item) if item.isdigit() else None
        if handle is None:
            try:
                handle = await client.findPath(item)
            except FileNotFoundError:
                raise CLIError(f"no object {item!r} on the camera") from None
        await client.deleteObject(handle)
        if not args.json:
            print(f"deleted {item}")


async def _vendor_capture(reactor: Any, client: Any, args: argparse.Namespace, vendor: str) -> None:
    from .vendors import EOS, Nikon
    helper = EOS(client) if vendor == "canon-eos" else Nikon(client)
    shots = await helper.capture(reactor, timeout=args.wait)
    out = []
    for shot in shots:
        item: dict[str, Any] = {"handle": shot.handle, "filename": shot.filename, "held": shot.data is not None}
        if args.download or shot.data is not None:
            # A picture held in the camera (EOS "PC", Nikon SDRAM) was fetched already and
            # is gone from the camera: it is always saved.
            os.makedirs(args.output, exist_ok=True)
            target = _within(args.output, shot.filename)
            if shot.data is not None:
                with open(target, "wb") as f:
                    f.write(shot.data)
            else:
                await client.download(shot.handle, target)
            item["file"] = target
        out.append(item)
    _out(args, out, "\n".join(f"captured {i['filename']} ({'held in the camera' if i['held'] else 'handle ' + str(i['handle'])})"
                              + (f" -> {i['file']}" if "file" in i else "") for i in out))


async def cmd_capture(reactor: Any, client: Any, args: argparse.Namespace) -> None:
    from .vendors import vendor_of
    vendor = vendor_of(client.device_info)
    if vendor is not None:
        await _vendor_capture(reactor, client, args, vendor)
        return
    handles = await client.capture(reactor, timeout=args.wait)
    if not handles:
        raise CLIError("the camera captured nothing (CaptureComplete came without a new object)")
    out = []
    for h in handles:
        oi = await client.getObjectInfo(h)
        item = {"handle": h, "filename": oi.filename, "size": oi.object_compressed_size}
        if args.download:
            os.makedirs(args.output, exist_ok=True)
            target = _within(args.output, oi.filename)
            await client.download(h, target)
            item["file"] = target
        out.append(item)
    _out(args, out, "\n".join(f"captured {i['filename']} (handle {i['handle']})"
                              + (f" -> {i['file']}" if "file" in i else "") for i in out))


async def _eos_props(client: Any, args: argparse.Namespace) -> None:
    """``ptpip props`` on a Canon EOS: the properties GetEvent reports, set with 0x9110."""
    from .vendors import EOS
    helper = EOS(client)
    descs = {d.code: d for d in await helper.properties()}
    if args.action in ("list", None):
        _out(args, [_desc_json(d, "canon-eos") for d in descs.values()],
             "\n".join(_desc_text(d, "canon-eos") for d in descs.values()))
        return
    if not args.property:
        raise CLIError(f"props {args.action} needs a property name or code")
    code = _prop_code(args.property, "canon-eos")
    if code not in descs:
        raise CLIError(f"the camera reports no property {args.property}")
    if args.action == "set":
        if args.value is None:
            raise CLIError("props set needs a value")
        await helper.set(code, _parse_value(descs[code], args.value))
        descs = {d.code: d for d in await helper.properties()}
    elif args.action == "reset":
        raise CLIError("a Canon EOS has no reset of one property")
    _out(args, _desc_json(descs[code], "canon-eos"), _desc_text(descs[code], "canon-eos"))


async def cmd_props(reactor: Any, client: Any, args: argparse.Namespace) -> None:
    from .vendors import Nikon, vendor_of
    vendor = vendor_of(client.device_info)
    if vendor == "canon-eos":
        await _eos_props(client, args)
        return
    if args.action == "list" or args.action is None:
        descs = []
        codes = (await Nikon(client).property_codes() if vendor == "nikon"
                 else client.device_info.device_properties_supported)
        for code in codes:
            try:
                descs.append(await client.getDevicePropDesc(code))
            except PTPResponseError:
                continue
        _out(args, [_desc_json(d, vendor) for d in descs], "\n".join(_desc_text(d, vendor) for d in descs))
        return
    if not args.property:
        raise CLIError(f"props {args.action} needs a property name or code")
    code = _prop_code(args.property, vendor)
    desc = await client.getDevicePropDesc(code)
    if args.action == "get":
        _out(args, _desc_json(desc, vendor), _desc_text(desc, vendor))
    elif args.action == "set":
        if args.value is None:
            raise CLIError("props set needs a value")
        value = _parse_value(desc, args.value)
        await client.setDevicePropValue(code, value, desc.datatype)
        desc = await client.getDevicePropDesc(code)
        _out(args, _desc_json(desc, vendor), _desc_text(desc, vendor))
    elif args.action == "reset":
        await client.resetDevicePropValue(code)
        desc = await client.getDevicePropDesc(code)
        _out(args, _desc_json(desc, vendor), _desc_text(desc, vendor))


async def cmd_liveview(reactor: Any, client: Any, args: argparse.Namespace) -> None:
    """Live view frames as MJPEG (concatenated JPEGs) to a file or stdout; a frame counter
    and the rate on stderr."""
    out: Any = sys.stdout.buffer if args.stdout else open(args.output, "wb")
    started = time.monotonic()
    counted = [0]

    def frame(jpeg: bytes) -> None:
        out.write(jpeg)
        counted[0] += 1
        if args.progress:
            rate = counted[0] / max(1e-6, time.monotonic() - started)
            sys.stderr.write(f"\rframe {counted[0]}  {rate:5.1f} fps")
            sys.stderr.flush()
    try:
        async with client.liveview(reactor, frames=args.frames, duration=args.duration) as view:
            async for jpeg in view:
                frame(jpeg)
        n = view.count
    except PTPIPError as e:
        raise CLIError(str(e)) from None
    finally:
        out.flush()
        if not args.stdout:
            out.close()
    if args.progress:
        sys.stderr.write("\n")
    elapsed = time.monotonic() - started
    sys.stderr.write(f"{n} frames in {elapsed:.1f} s ({n / max(elapsed, 1e-6):.1f} fps)"
                     + ("" if args.stdout else f" -> {args.output}") + "\n")


_OBJECT_EVENTS = frozenset({EventCode.ObjectAdded, EventCode.ObjectRemoved, EventCode.ObjectInfoChanged,
                            EventCode.RequestObjectTransfer})
_STORE_EVENTS = frozenset({EventCode.StoreAdded, EventCode.StoreRemoved, EventCode.StoreFull,
                           EventCode.StorageInfoChanged})
_TRANSACTION_EVENTS = frozenset({EventCode.CaptureComplete, EventCode.CancelTransaction})


def _enum_name(enum_type: Any, code: int) -> str | None:
    try:
        return str(enum_type(code).name)
    except ValueError:
        return None


def _event_fields(e: Any) -> tuple[str, dict[str, Any], list[int]]:
    """An event as (name, what its first parameter means, the parameters left over)."""
    name = _enum_name(EventCode, e.code) or f"0x{e.code:04X}"
    params = list(e.params)
    fields: dict[str, Any] = {}
    if params and e.code == EventCode.DevicePropChanged:
        code = params.pop(0)
        fields["property"] = {"code": f"0x{code:04X}", "name": _enum_name(DevicePropCode, code)}
    elif params and e.code in _OBJECT_EVENTS:
        fields["handle"] = params.pop(0)
    elif params and e.code in _STORE_EVENTS:
        fields["storage_id"] = f"0x{params.pop(0):08X}"
    if e.code in _TRANSACTION_EVENTS and e.transaction_id != NO_TRANSACTION:
        fields["transaction"] = e.transaction_id
    return name, fields, params


def _event_text(e: Any) -> str:
    """``DevicePropChanged FNumber (0x5007)``, ``ObjectAdded handle 7``, ``0xC101 0x00000001``."""
    name, fields, rest = _event_fields(e)
    words = [name]
    prop = fields.get("property")
    if prop:
        words.append(f"{prop['name']} ({prop['code']})" if prop["name"] else prop["code"])
    if "handle" in fields:
        words.append(f"handle {fields['handle']}")
    if "storage_id" in fields:
        words.append(f"storage {fields['storage_id']}")
    if "transaction" in fields:
        words.append(f"transaction {fields['transaction']}")
    words += [f"0x{p:08X}" for p in rest]
    return " ".join(words)


def _event_json(e: Any) -> dict[str, Any]:
    name, fields, _ = _event_fields(e)
    return {"event": name, "code": f"0x{e.code:04X}", "transaction_id": e.transaction_id,
            "params": list(e.params), **{k: v for k, v in fields.items() if k != "transaction"}}


async def cmd_events(reactor: Any, client: Any, args: argparse.Namespace) -> None:
    done: defer.Deferred[None] = defer.Deferred()
    count = [0]

    def show(e: Any) -> None:
        if args.json:
            print(json.dumps(_event_json(e)), flush=True)
        else:
            print(_event_text(e), flush=True)
        count[0] += 1
        if args.count and count[0] >= args.count and not done.called:
            done.callback(None)

    # Listen first, then open the session: no event sent right after OpenSession is missed.
    client.subscribe(show)
    await client.openSession()

    def finish(_: Any = None) -> None:
        if not done.called:
            done.callback(None)

    def closed(_: Any) -> None:
        # Before --count or --duration ended it: the camera hung up (e.g. its idle timeout).
        if not done.called:
            n = count[0]
            done.errback(CLIError(f"the camera closed the connection after {n} event{'' if n == 1 else 's'}"))

    client.session.whenClosed.addBoth(closed)
    timer = reactor.callLater(args.duration, finish) if args.duration else None
    try:
        await done
    finally:
        if timer is not None and timer.active():
            timer.cancel()


_COMMANDS = {"info": cmd_info, "ls": cmd_ls, "get": cmd_get, "put": cmd_put, "rm": cmd_rm,
             "capture": cmd_capture, "props": cmd_props, "events": cmd_events, "liveview": cmd_liveview}


def _common(defaults: bool) -> argparse.ArgumentParser:
    """The connection options, accepted before and after the subcommand
    (``ptpip --port 15741 ls`` and ``ptpip ls --port 15741``)."""
    c = argparse.ArgumentParser(add_help=False)

    def d(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS
    c.add_argument("--host", default=d(os.environ.get("PTPIP_HOST", "127.0.0.1")),
                   help="camera address (default 127.0.0.1 or $PTPIP_HOST)")
    c.add_argument("--port", type=int, default=d(DEFAULT_PORT), help=f"TCP port (default {DEFAULT_PORT})")
    c.add_argument("--timeout", type=float, default=d(30.0), help="connection timeout in seconds")
    c.add_argument("--name", default=d("ptpip cli"), help="our friendly name")
    c.add_argument("--json", action="store_true", default=d(False), help="machine-readable output")
    return c


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ptpip", description="Talk to a PTP-IP camera.", parents=[_common(True)])
    sub = p.add_subparsers(dest="command", required=True)
    common = [_common(False)]

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=common)
    dsc = command("discover", "list cameras announcing themselves (DNS-SD and SSDP/UPnP)")
    dsc.add_argument("--wait", type=float, default=3.0, help="seconds to listen")
    command("info", "show DeviceInfo")
    command("ls", "list the objects as a tree")
    g = command("get", "download objects (handles or paths)")
    g.add_argument("objects", nargs="*")
    g.add_argument("--all", action="store_true", help="every file")
    g.add_argument("-o", "--output", default=".", help="destination folder")
    g.add_argument("--keep-tree", action="store_true", help="recreate the camera's folders")
    u = command("put", "upload files")
    u.add_argument("files", nargs="+")
    u.add_argument("--folder", default="", help="camera folder path (default: the root)")
    r = command("rm", "delete objects (handles or paths)")
    r.add_argument("objects", nargs="+")
    c = command("capture", "take a picture")
    c.add_argument("--download", action="store_true", help="download what was captured")
    c.add_argument("-o", "--output", default=".")
    c.add_argument("--wait", type=float, default=30.0, help="seconds to wait for CaptureComplete")
    pr = command("props", "list, get, set or reset device properties")
    pr.add_argument("action", nargs="?", choices=["list", "get", "set", "reset"], default="list")
    pr.add_argument("property", nargs="?", help="a name (FNumber) or a code (0x5007)")
    pr.add_argument("value", nargs="?")
    lv = command("liveview", "live view frames as MJPEG (Canon EOS, Nikon, PTP 1.1 streams)")
    lv.add_argument("--frames", type=int, default=0, help="stop after this many frames (0: no limit)")
    lv.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: no limit)")
    lv.add_argument("--stdout", action="store_true", help="write the MJPEG to standard output")
    lv.add_argument("-o", "--output", default="liveview.mjpg", help="file to write (default liveview.mjpg)")
    lv.add_argument("--progress", dest="progress", action="store_true", default=sys.stderr.isatty(),
                    help="a frame counter and the rate on stderr (default: on a terminal)")
    lv.add_argument("--no-progress", dest="progress", action="store_false")
    e = command("events", "print events as they come")
    e.add_argument("--count", type=int, default=0, help="stop after this many events")
    e.add_argument("--duration", type=float, default=0, help="stop after this many seconds")
    for sp in (g, u):
        sp.add_argument("--progress", dest="progress", action="store_true", default=sys.stderr.isatty(),
                        help="show a progress bar (default: on a terminal)")
        sp.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def discover(args: argparse.Namespace) -> int:
    try:
        from .discovery import browse
    except ImportError:
        sys.stderr.write("ptpip: discovery needs python-zeroconf (pip install zeroconf)\n")
        return 1
    from concurrent.futures import ThreadPoolExecutor

    from .ssdp import browse_ssdp
    with ThreadPoolExecutor(2) as pool:       # both at once: the wait is not doubled
        mdns, upnp = pool.submit(browse, args.wait), pool.submit(browse_ssdp, args.wait)
        found: list[Any] = []
        index: dict[tuple[str, str, int], int] = {}
        for via, future in (("dns-sd", mdns), ("ssdp", upnp)):
            for f in future.result():
                key = (f.guid, f.address, f.port)
                if key in index:          # announced both ways: one camera, both named
                    found[index[key]] = dataclasses.replace(found[index[key]], via=f"{found[index[key]].via},{via}")
                else:
                    index[key] = len(found)
                    found.append(dataclasses.replace(f, via=via))
    if args.json:
        print(json.dumps([f.__dict__ for f in found], indent=2))
    elif not found:
        print("no PTP-IP cameras found")
    for f in found if not args.json else []:
        print(f"{f.name:24} {f.address}:{f.port:<6} GUID {f.guid}" + (f"  ({f.model})" if f.model else "")
              + f"  [{f.via}]")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "discover":
        raise SystemExit(discover(args))
    status = [0]

    def run(reactor: Any) -> defer.Deferred[Any]:
        d = _run(reactor, args)

        def report(f: Any) -> None:
            e = f.value
            if isinstance(e, OSError) and e.filename and e.strerror:
                sys.stderr.write(f"ptpip: {e.filename}: {e.strerror}\n")
            elif isinstance(e, (CLIError, PTPIPError, OSError)):
                sys.stderr.write(f"ptpip: {e}\n")
            else:
                sys.stderr.write(f"ptpip: unexpected error: {e.__class__.__name__}: {e}\n")
            status[0] = 1

        return d.addErrback(report)

    try:
        task.react(run)
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    raise SystemExit(status[0])


if __name__ == "__main__":
    main()
