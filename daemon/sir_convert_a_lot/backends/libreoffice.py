"""LibreOffice, which docling runs (``soffice --convert-to``) to read the legacy binary formats:
Word 97-2003 (``.doc``), PowerPoint 97-2003 (``.ppt``), Excel 97-2003 (``.xls``) and RTF.

A host may lack it: then such a file fails at once with one sentence naming what is missing
(``unsupported_media_type``, reason ``converter_missing``), never halfway through a converter,
and ``sir-convert doctor`` says the same. docling looks for it in this order, which ``command``
repeats without importing docling (doctor asks too): ``DOCLING_LIBREOFFICE_CMD``, then
``libreoffice`` and ``soffice`` on ``PATH``, then the macOS application.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Final

from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.formats import FORMATS, DocumentFormat

MISSING: Final = "LibreOffice (soffice)"
MACOS_SOFFICE: Final = "/Applications/LibreOffice.app/Contents/MacOS/soffice"
LEGACY: Final = tuple(f for f in FORMATS if f.legacy)
INSTALL_HINT: Final = (
    "install LibreOffice (Debian: apt-get install libreoffice-writer-nogui "
    "libreoffice-calc-nogui libreoffice-impress-nogui)"
)


def command(environ: dict[str, str] | None = None) -> str | None:
    """The LibreOffice command docling would run, or None when this host has none."""
    env = os.environ if environ is None else environ
    return (
        env.get("DOCLING_LIBREOFFICE_CMD")
        or shutil.which("libreoffice", path=env.get("PATH"))
        or shutil.which("soffice", path=env.get("PATH"))
        or (MACOS_SOFFICE if Path(MACOS_SOFFICE).is_file() else None)
    )


def require(found: DocumentFormat) -> None:
    """Raise ``converter_missing`` unless LibreOffice is here to read ``found``."""
    if command() is None:
        raise missing(found)


def missing(found: DocumentFormat) -> JobFailure:
    suffix = next(iter(found.suffixes))
    return JobFailure(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"This host cannot read a {found.label} ({suffix}): that needs {MISSING}, which is not "
        "installed here; save the file in a current format (such as .docx, .pptx, .xlsx or PDF) "
        "and drop that instead.",
        reason="converter_missing",
        missing=MISSING,
        format=found.name,
    )
