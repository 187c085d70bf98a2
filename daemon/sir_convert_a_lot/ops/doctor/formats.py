"""The document formats this host can read beyond what the package brings: the legacy binary
ones (``.doc``, ``.ppt``, ``.xls``, ``.rtf``) need LibreOffice, which docling runs to read them.
Without it such a file fails ``unsupported_media_type`` (reason ``converter_missing``) with the
same sentence as this row; every other format needs nothing outside the package."""

from __future__ import annotations

from collections.abc import Iterator

from sir_convert_a_lot.backends import libreoffice
from sir_convert_a_lot.ops.doctor.report import OK, WARN, Check

NAME = "legacy formats"


def legacy_formats(environ: dict[str, str]) -> Iterator[Check]:
    suffixes = ", ".join(s for found in libreoffice.LEGACY for s in found.suffixes)
    command = libreoffice.command(environ)
    if command is not None:
        yield Check(OK, NAME, f"{suffixes} convert through {libreoffice.MISSING} at {command}")
        return
    yield Check(
        WARN,
        NAME,
        f"{libreoffice.MISSING} is not installed: {suffixes} files fail unsupported_media_type "
        "(converter_missing); every other format converts",
        f"{libreoffice.INSTALL_HINT}, or leave doc, ppt, xls and rtf out of conversion.formats",
    )
