"""Versions of the components that shaped an output, for the sidecar's ``versions``."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from sir_convert_a_lot import __version__

_PACKAGES = ("pymupdf", "pymupdf4llm", "pymupdf-layout", "docling", "docling-ibm-models", "torch")


def component_versions() -> dict[str, str]:
    found = {"sir_convert_a_lot": __version__, "python": platform.python_version()}
    for package in _PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
