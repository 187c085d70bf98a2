"""Is a claimed file a document this job may convert: a format its folder accepts and its backend
reads, bytes that are what its name says, and (for a ZIP) not a bomb? Each refusal carries one
sentence that tells the person at the share what to do.

These are the format half of the supervisor's checks (``source_checks`` runs them in order).
They read only what ``sniff`` and ``zipdir`` read: the head, and a ZIP's end record and
directory, bounded and never decompressed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from sir_convert_a_lot import completeness, tiff_ifds, zipdir
from sir_convert_a_lot.capabilities import capabilities_of
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.formats import (
    BY_NAME,
    FORMATS,
    Content,
    DocumentFormat,
    accepted_suffixes,
    format_of_name,
)
from sir_convert_a_lot.names import display, split_suffix
from sir_convert_a_lot.sniff import Identity, fits
from sir_convert_a_lot.source_file import HEAD_NOT_ARRIVED

# Names people drop that hold documents, though not in a form the service reads.
_APPLE: Final = {".pages": ("Pages", "Word"), ".key": ("Keynote", "PowerPoint"),
                 ".numbers": ("Numbers", "Excel")}  # fmt: skip

_FOUND: Final[dict[str, str]] = {
    "pdf": "a PDF",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "tiff": "a TIFF image",
    "bmp": "a BMP image",
    "webp": "a WebP image",
    "zip": "a ZIP archive",
    "ole": "a legacy Office file (Word, Excel or PowerPoint 97-2003)",
    "rtf": "a Rich Text document",
    "text": "plain text",
    "unknown": "data in no format this service reads",
}
# The suffix to rename a file to, for the content found (a ZIP's: its kind's).
_RENAME: Final[dict[str, str]] = {
    "pdf": ".pdf",
    "png": ".png",
    "jpeg": ".jpg",
    "tiff": ".tif",
    "bmp": ".bmp",
    "webp": ".webp",
    "rtf": ".rtf",
    "ole": ".doc, .xls or .ppt (as the program that made it)",
}

_WHAT: Final[dict[str, str]] = {
    HEAD_NOT_ARRIVED: "it holds only zero bytes where the document should begin",
    zipdir.NO_END: "its end never arrived (there is no ZIP end record at its end)",
    zipdir.DIRECTORY_NOT_ARRIVED: "its table of contents never arrived (the ZIP end record "
    "points at unwritten data)",
    completeness.PNG_END_NOT_ARRIVED: "its end never arrived (there is no IEND chunk at its end)",
    completeness.JPEG_END_NOT_ARRIVED: "its end never arrived (there is no end-of-image marker "
    "at its end)",
    tiff_ifds.IFD_NOT_ARRIVED: "one of its pages never arrived (an image directory lies beyond "
    "the end)",
    tiff_ifds.DATA_NOT_ARRIVED: "the picture data of one of its pages never arrived",
    completeness.SHORTER_THAN_DECLARED: "it is shorter than its header says",
}


def with_article(label: str) -> str:
    return ("an " if label[0].lower() in "aeiou" else "a ") + label


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def accepted_format(name: str, accepted: Collection[str], backend: str) -> DocumentFormat:
    """The format ``name`` promises, when this job may convert it; else ``unsupported_media_type``
    (``format_not_accepted``, or ``backend_cannot_read``)."""
    found = format_of_name(name)
    if found is None or found.name not in accepted:
        raise _not_accepted(name, found, accepted)
    reads = capabilities_of(backend).reads
    if found.name not in reads:
        readable = " or ".join(f.label for f in FORMATS if f.name in reads)
        raise JobFailure(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"The {backend} backend that converts this folder reads only {readable}; save "
            f"{display(name)!r} as {readable}, or ask the operator to use the docling backend "
            "here.",
            reason="backend_cannot_read",
            backend=backend,
            format=found.name,
        )
    return found


def _not_accepted(name: str, found: DocumentFormat | None, accepted: Collection[str]) -> JobFailure:
    shown = display(name)
    suffix = split_suffix(name)[1].lower()
    listed = ", ".join(accepted_suffixes(accepted))
    if suffix == ".zip":
        message = f"{shown!r} is a ZIP archive; unpack it and drop the documents themselves."
    elif suffix in _APPLE:
        app, office = _APPLE[suffix]
        message = (
            f"{shown!r} is an Apple {app} file, which is not converted; export it as PDF or "
            f"{office} from the app (File > Export To) and drop that."
        )
    elif found is not None:
        message = (
            f"{_sentence(with_article(found.label))} ({shown!r}) is not converted here; "
            f"drop a file ending in one of: {listed}."
        )
    else:
        message = f"{shown!r} is not converted: drop a file ending in one of: {listed}."
    return JobFailure(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        message,
        reason="format_not_accepted",
        suffix=suffix,
        accepted=[f.name for f in FORMATS if f.name in accepted],
    )


def check_content(
    identity: Identity, name: str, named: DocumentFormat, accepted: Collection[str]
) -> None:
    """The bytes must be what the name says (a ZIP: the very kind of document)."""
    promised: Content = named.suffixes[split_suffix(name)[1].lower()]
    if fits(promised, identity.content) and (promised != "zip" or identity.kind == named.name):
        return
    suffix = split_suffix(name)[1].lower()
    kind = BY_NAME[identity.kind] if identity.kind is not None else None
    holds = with_article(kind.label) if kind is not None else _FOUND[identity.content]
    rename = next(iter(kind.suffixes)) if kind is not None else _RENAME.get(identity.content)
    wanted = with_article(named.label)
    target = kind or _format_of_content(identity.content)
    if rename is not None and target is not None and target.name in accepted:
        advice = f"rename it to end in {rename} and drop it again"
    elif identity.content == "zip" and kind is None:
        advice = f"save it again as {wanted}, or unpack it and drop the documents themselves"
    else:
        advice = f"save or export it again as {wanted} and drop that"
    details: dict[str, str] = {"named_as": named.name, "content": identity.content}
    if kind is not None:
        details["kind"] = kind.name
    raise JobFailure(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"This file is named {suffix} but holds {holds}; {advice}.",
        reason="content_mismatch",
        **details,
    )


def _format_of_content(content: str) -> DocumentFormat | None:
    return next((f for f in FORMATS if content in f.suffixes.values()), None)


def check_unpacked(identity: Identity, named: DocumentFormat, max_file_bytes: int) -> None:
    """A ZIP's declared unpacked size counts against ``conversion.max_file_bytes``: a ZIP bomb
    fails here, before any worker inflates it (the worker checks the real sizes as it reads)."""
    directory = identity.directory
    if directory is None or "zip" not in named.suffixes.values():
        return  # no ZIP, or not named as one: the content check says what it is
    label = named.label
    if directory.over_limit:
        raise JobFailure(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"The {label} holds {directory.entries} parts, more than the {zipdir.MAX_ENTRIES} "
            "this service reads; split it or save it again with fewer parts.",
            reason="too_many_entries",
            entries=directory.entries,
            max_entries=zipdir.MAX_ENTRIES,
        )
    if directory.unpacked_bytes > max_file_bytes:
        raise JobFailure(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"The {label} unpacks to {directory.unpacked_bytes} bytes, over this service's "
            f"limit of {max_file_bytes} bytes; split it or ask the operator to raise the limit.",
            reason="unpacked_too_large",
            unpacked_bytes=directory.unpacked_bytes,
            max_file_bytes=max_file_bytes,
        )


def truncated(named: DocumentFormat, missing: str) -> JobFailure:
    """A document other than a PDF whose end (or start) never arrived."""
    what = _WHAT.get(missing, "part of it never arrived")
    return JobFailure(
        ErrorCode.DOCUMENT_UNREADABLE,
        f"The {named.label} is incomplete: {what}; the copy was interrupted, so drop a "
        "complete copy.",
        reason="truncated",
        missing=missing,
    )
