"""Sphinx configuration of the twisted-ptpip documentation.

Build with:  sphinx-build -W --keep-going -b html docs docs/_build/html
"""

import configparser
import os
from importlib import metadata

project = "twisted-ptpip"
author = "the twisted-ptpip authors"
copyright = "the twisted-ptpip authors"


def _version() -> str:
    """The installed package's version; else the one in setup.cfg; else 'unknown'."""
    try:
        return metadata.version("twisted-ptpip")
    except metadata.PackageNotFoundError:
        cfg = configparser.ConfigParser()
        cfg.read(os.path.join(os.path.dirname(__file__), os.pardir, "setup.cfg"))
        return cfg.get("metadata", "version", fallback="unknown")


release = _version()
version = ".".join(release.split(".")[:2])

# Only extensions that ship with Sphinx (the build runs without network access).
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

language = "en"
exclude_patterns = ["_build", "examples"]
templates_path = []
html_static_path = []
html_theme = "alabaster"
html_title = f"twisted-ptpip {release}"
html_theme_options = {
    "description": "PTP-IP and CCCP cameras over IP, for Twisted",
    "fixed_sidebar": True,
}
pygments_style = "sphinx"
highlight_language = "none"

# -- API reference -----------------------------------------------------------------
# Modules are documented in docs/reference/ with automodule; members in source order.
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "signature"


def _interface_doc(obj):
    """The docstring a method or attribute inherits from a zope interface its class
    implements (implementations of IObjectStore.open and the like carry none)."""
    import importlib
    import inspect

    from zope.interface import implementedBy

    qualname = getattr(obj, "__qualname__", "")
    owner, _, member = qualname.rpartition(".")
    if not owner or "<" in owner:
        return None
    try:
        cls = importlib.import_module(obj.__module__)
        for part in owner.split("."):
            cls = getattr(cls, part)
        ifaces = list(implementedBy(cls).flattened())
    except Exception:
        return None
    for iface in ifaces:
        if not iface.__module__.startswith(("ptpip.", "cccp.")):
            continue   # Twisted's interfaces are written in epytext
        described = iface.get(member)
        if described is not None and described.getDoc():
            return f"{inspect.cleandoc(described.getDoc())}\n\n(From :class:`{iface.__module__}.{iface.__name__}`.)"
    return None


def _skip_member(app, what, name, obj, skip, options):
    # Keep undocumented methods that implement a documented interface method.
    if skip and what == "class" and not name.startswith("_") and _interface_doc(obj):
        return False
    return None


def _fill_docstring(app, what, name, obj, options, lines):
    if what == "method" and not any(line.strip() for line in lines):
        doc = _interface_doc(obj)
        if doc:
            lines[:] = doc.splitlines()


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-docstring", _fill_docstring)
