"""Drive a camera with the ``gphoto2`` wheel from PyPI (python-gphoto2 and the newer
libgphoto2 it bundles), as a second peer beside Debian's gphoto2 command.

Run as a separate process (libgphoto2 blocks, and its settings live under $HOME)::

    python gphoto2_wheel.py MODEL PORT ACTION [ARGS...] [--debug FILE]

It prints what the gphoto2 command prints for the same action, where the tests look:
``summary``; ``list`` (``FILE /folder/name`` lines); ``get-all DEST``; ``capture DEST``
(``New file is in location /folder/name``; ``--card`` captures to the card, ``--keep``
keeps it there); ``preview DEST`` (one live view frame); ``preview-set DEST NAME
VALUE N`` (p1.jpg, the setting changed, p2.jpg ... N more); ``movie SECONDS`` (frames as MJPEG on stdout); ``list-config``; ``get NAME``
(``Current: value``); ``set NAME VALUE``; ``wait SECONDS`` (the event lines of
``gphoto2 --wait-event``).
"""

from __future__ import annotations

import os
import sys
import time

import gphoto2 as gp


def open_camera(model: str, port: str) -> gp.Camera:
    camera = gp.Camera()
    abilities = gp.CameraAbilitiesList()
    abilities.load()
    camera.set_abilities(abilities[abilities.lookup_model(model)])
    ports = gp.PortInfoList()
    ports.load()
    camera.set_port_info(ports[ports.lookup_path(port)])
    camera.init()
    return camera


def walk(camera: gp.Camera, folder: str = "/") -> list[str]:
    paths = [f"{folder.rstrip('/')}/{name}" for name, _ in camera.folder_list_files(folder)]
    for name, _ in camera.folder_list_folders(folder):
        paths += walk(camera, f"{folder.rstrip('/')}/{name}")
    return paths


def widgets(widget: gp.CameraWidget, prefix: str = "") -> list[str]:
    out = []
    for i in range(widget.count_children()):
        child = widget.get_child(i)
        path = f"{prefix}/{child.get_name()}"
        if child.get_type() in (gp.GP_WIDGET_SECTION, gp.GP_WIDGET_WINDOW):
            out += widgets(child, path)
        else:
            out.append(path)
    return out


def event_line(kind: int, data: object) -> str | None:
    if kind == gp.GP_EVENT_UNKNOWN and data:
        return f"UNKNOWN {data}"
    if kind == gp.GP_EVENT_FILE_ADDED:
        return f"FILEADDED {data.name} {data.folder}"            # type: ignore[attr-defined]
    if kind == gp.GP_EVENT_FOLDER_ADDED:
        return f"FOLDERADDED {data.name} {data.folder}"          # type: ignore[attr-defined]
    if kind == gp.GP_EVENT_CAPTURE_COMPLETE:
        return "CAPTURECOMPLETE"
    return None


def main(argv: list[str]) -> int:
    debug = None
    if "--debug" in argv:
        i = argv.index("--debug")
        debug = open(argv[i + 1], "w")
        del argv[i:i + 2]

        def log(level: int, domain: str, text: str, _data: object) -> None:
            debug.write(f"{domain}: {text}\n")
        handle = gp.gp_log_add_func(gp.GP_LOG_DEBUG, log, None)   # noqa: F841 - keeps it alive
    model, port, action, *args = argv
    camera = open_camera(model, port)
    try:
        if action == "summary":
            print(camera.get_summary().text)
        elif action == "list":
            for path in walk(camera):
                print("FILE", path)
        elif action == "get-all":
            for path in walk(camera):
                folder, name = os.path.split(path)
                camera.file_get(folder, name, gp.GP_FILE_TYPE_NORMAL).save(os.path.join(args[0], name))
                print("Saving file as", name)
        elif action == "capture":
            if "--card" in args:
                # capturetarget is a setting of libgphoto2's, not of the camera's, and this
                # libgphoto2 keeps it for the process only.
                widget = camera.get_single_config("capturetarget")
                widget.set_value("Memory card")
                camera.set_single_config("capturetarget", widget)
            where = camera.capture(gp.GP_CAPTURE_IMAGE)
            print(f"New file is in location {where.folder.rstrip('/')}/{where.name} on the camera")
            camera.file_get(where.folder, where.name, gp.GP_FILE_TYPE_NORMAL).save(
                os.path.join(args[0], where.name))
            print("Saving file as", where.name)
            if "--keep" not in args:
                camera.file_delete(where.folder, where.name)
        elif action == "preview":
            camera.capture_preview().save(os.path.join(args[0], "capture_preview.jpg"))
            print("Saving file as capture_preview.jpg")
        elif action == "movie":
            # What gphoto2 --capture-movie=Ns --stdout does: previews back to back, as MJPEG.
            end = time.monotonic() + float(args[0])
            while time.monotonic() < end:
                frame = camera.capture_preview()        # the data lives as long as the file
                sys.stdout.buffer.write(bytes(frame.get_data_and_size()))
            sys.stdout.buffer.flush()
        elif action == "preview-set":
            # Live view, then a setting changed while it runs, then the next frames.
            camera.capture_preview().save(os.path.join(args[0], "p1.jpg"))
            widget = camera.get_single_config(args[1])
            widget.set_value(args[2])
            camera.set_single_config(args[1], widget)
            for n in range(2, 2 + int(args[3])):
                camera.capture_preview().save(os.path.join(args[0], f"p{n}.jpg"))
                print(f"Saving file as p{n}.jpg")
        elif action == "list-config":
            print("\n".join(widgets(camera.get_config(), "/main")))
        elif action == "get":
            print("Current:", camera.get_single_config(args[0]).get_value())
        elif action == "set":
            widget = camera.get_single_config(args[0])
            widget.set_value(args[1])
            camera.set_single_config(args[0], widget)
        elif action == "wait":
            end = time.monotonic() + float(args[0])
            while (left := end - time.monotonic()) > 0:
                kind, data = camera.wait_for_event(max(1, int(min(left, 1.0) * 1000)))
                line = event_line(kind, data)
                if line:
                    print(line, flush=True)
        else:
            print("unknown action", action, file=sys.stderr)
            return 2
    finally:
        camera.exit()
        if debug is not None:
            debug.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
