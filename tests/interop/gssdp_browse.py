"""Browse SSDP with GSSDP (GNOME's SSDP library, through PyGObject): what Debian's
``gssdp-discover`` did before bookworm's gssdp-tools stopped shipping it.

Run with the system Python that has ``gi`` and GSSDP 1.6::

    /usr/bin/python3 gssdp_browse.py INTERFACE TARGET SECONDS

Prints one JSON line per resource GSSDP reports available: its USN and locations.
"""

import json
import sys

import gi

gi.require_version("GSSDP", "1.6")
from gi.repository import GSSDP, GLib  # noqa: E402


def main() -> int:
    iface, target, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    client = GSSDP.Client.new_full(iface, None, 0, GSSDP.UDAVersion.VERSION_1_0)
    browser = GSSDP.ResourceBrowser.new(client, target)

    def available(_browser, usn, locations):
        print(json.dumps({"usn": usn, "locations": list(locations)}), flush=True)

    browser.connect("resource-available", available)
    browser.set_active(True)
    loop = GLib.MainLoop()
    GLib.timeout_add(int(seconds * 1000), loop.quit)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
