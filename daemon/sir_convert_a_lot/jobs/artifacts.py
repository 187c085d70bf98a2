"""A result's extra outputs, made final once its stem is known: the pictures (``output.images``)
and the lossless docling JSON (``output.formats``).

The worker links each picture as ``link_prefix + picture-0001.png`` (``backends.pictures``), in
the Markdown and in the JSON alike, because only publish knows the stem. Here each such link
becomes, with ``referenced``, the picture's path relative to the Markdown,
``<stem>_artifacts/picture-0001.png`` (percent-encoded in the Markdown, so a stem with spaces,
brackets or non-ASCII letters still makes a working link; a plain path in the JSON, as
docling-core writes it), or with ``embedded`` a ``data:image/png;base64,`` URI in both. Only the
exact links of this result's pictures are replaced: the prefix is random, so text in the PDF
cannot make one. Picture names are checked against our own pattern; nothing the PDF named
becomes a file name.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sir_convert_a_lot.engine.protocol import Converted
from sir_convert_a_lot.jobs.publish import ARTIFACTS, DOCLING_JSON
from sir_convert_a_lot.names import json_name

PICTURE_NAME = re.compile(r"picture-[0-9]{4,6}\.png")


@dataclass(frozen=True)
class Rendered:
    """What publish writes: the final Markdown, the PNG files for ``<stem>_artifacts/`` (none
    when the pictures are embedded) and the docling JSON, when asked for."""

    markdown: bytes
    pictures: tuple[tuple[str, bytes], ...] = ()
    docling_json: bytes | None = None


def artifacts_folder(stem: str) -> str:
    return stem + ARTIFACTS


def render(answer: Converted, images: str, stem: str) -> Rendered:
    """The outputs of ``answer`` for the stem ``stem``, with its picture links resolved."""
    markdown = answer.markdown
    lossless = answer.docling_json.decode("utf-8") if answer.docling_json is not None else None
    pictures = tuple((n, data) for n, data in answer.pictures if PICTURE_NAME.fullmatch(n))
    if answer.link_prefix:
        for name, data in pictures:
            link = answer.link_prefix + name
            if images == "embedded":
                uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
                in_markdown = in_json = uri
            else:
                path = f"{artifacts_folder(stem)}/{name}"
                in_markdown = quote(os.fsencode(artifacts_folder(stem)), safe="") + "/" + name
                in_json = json.dumps(path, ensure_ascii=True)[1:-1]
            markdown = markdown.replace(link, in_markdown)
            if lossless is not None:
                lossless = lossless.replace(link, in_json)
    return Rendered(
        markdown=markdown.encode("utf-8"),
        pictures=pictures if images == "referenced" else (),
        docling_json=lossless.encode("utf-8") if lossless is not None else None,
    )


def listing(stem: str, rendered: Rendered) -> list[dict[str, Any]]:
    """``result.artifacts``: every file published besides the Markdown and the sidecar, named
    relative to the Markdown's folder, with its size and SHA-256."""
    files = [(f"{artifacts_folder(stem)}/{name}", data) for name, data in rendered.pictures]
    if rendered.docling_json is not None:
        files.append((stem + DOCLING_JSON, rendered.docling_json))
    return [
        {
            **json_name(name, "name"),
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        for name, data in files
    ]
