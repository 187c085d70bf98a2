"""Which exceptions from a converter mean "this file is broken", not "the converter failed".

A converter that meets a malformed PDF raises from deep inside its parser. Reported as
``conversion_internal_error`` (retryable) that would invite retries that fail the same way every
time, and would never tell the person who dropped the file that the file must change. So a
parser's own verdict on the file's data becomes ``pdf_unreadable``; everything else (our bugs,
memory, a missing library, MuPDF's argument or system errors) stays an internal error.

The verdicts trusted here are MuPDF's error classes for the file's data: ``FZ_ERROR_FORMAT``
(the structure is wrong: a cycle in the page tree, an invalid page count) and
``FZ_ERROR_SYNTAX`` (the bytes do not parse). PyMuPDF raises them as
``pymupdf.mupdf.FzErrorFormat``/``FzErrorSyntax``, or, from its C++ helpers, as a plain
``RuntimeError`` whose text starts ``code=7:`` or ``code=8:``.
"""

from __future__ import annotations

import re
from typing import Final

from sir_convert_a_lot.errors import ErrorCode, JobFailure

# MuPDF's fz_error_type values for a file whose data is malformed (fitz/system.h).
FZ_ERROR_FORMAT: Final = 7
FZ_ERROR_SYNTAX: Final = 8
_FILE_ERRORS: Final = {FZ_ERROR_FORMAT: "format", FZ_ERROR_SYNTAX: "syntax"}
_CODE_PREFIX: Final = re.compile(r"code=(\d+): ")
_CHAIN_DEPTH: Final = 5  # a wrapper may re-raise ``from`` the parser's exception


def broken_message(what: str) -> str:
    """One plain sentence: what is broken, and what the person can do about it."""
    return (
        f"The PDF's {what} is broken, so it cannot be converted; open it in a PDF reader, save "
        "or export it again, and drop the new copy."
    )


def mupdf_file_error(exc: BaseException) -> str | None:
    """``"format"`` or ``"syntax"`` when ``exc`` (or an exception it was raised from) is MuPDF
    reporting malformed file data; None for anything else."""
    seen: BaseException | None = exc
    for _ in range(_CHAIN_DEPTH):
        if seen is None:
            return None
        kind = _FILE_ERRORS.get(_mupdf_code(seen) or 0)
        if kind is not None:
            return kind
        # Only ``raise ... from``: an exception raised while *handling* MuPDF's (its implicit
        # __context__) may be a bug of its own and stays an internal error.
        seen = seen.__cause__
    return None


def _mupdf_code(exc: BaseException) -> int | None:
    code = getattr(exc, "m_code", None)
    if isinstance(code, int) and type(exc).__module__ == "pymupdf.mupdf":
        return code
    if type(exc) is RuntimeError:
        match = _CODE_PREFIX.match(str(exc))
        if match:
            return int(match.group(1))
    return None


def broken_file(
    exc: BaseException, reason: str, what: str = "internal structure"
) -> JobFailure | None:
    """The ``pdf_unreadable`` failure for a parser's verdict on the file, or None when ``exc``
    is not one (the caller keeps it an internal error)."""
    kind = mupdf_file_error(exc)
    if kind is None:
        return None
    return JobFailure(
        ErrorCode.PDF_UNREADABLE,
        broken_message(what),
        reason=reason,
        parser="mupdf",
        parser_error=kind,
        parser_message=str(exc)[:300],
    )
