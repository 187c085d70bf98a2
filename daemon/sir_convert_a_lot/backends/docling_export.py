"""What the docling backend makes of a converted ``DoclingDocument``: the Markdown, the pictures
(``output.images``) and the lossless JSON (``output.formats`` with ``docling_json``).

- ``placeholder``: docling's Markdown as it always was, ``<!-- image -->`` for each picture.
- ``referenced`` / ``embedded``: every picture docling cropped (``generate_picture_images``) is
  taken as a PNG within the limits of ``backends.pictures``, and its ``image`` becomes a
  reference to ``prefix + picture-0001.png``; docling's Markdown then links it there, and
  publish turns the link into the relative path or a data URI. A picture left out by the limits
  loses its image (a placeholder in the Markdown, no image in the JSON).
- ``docling_json``: ``DoclingDocument.export_to_dict()`` (docling-core's lossless form: every
  item with its provenance, page number and bounding box, the page sizes), as compact UTF-8
  JSON. Its pictures' ``image.uri`` are the same references, so publish makes them the relative
  path of the PNG (``referenced``: no image data inline) or a data URI (``embedded``); with
  ``placeholder`` pictures have no image. docling-core's ``load_from_json`` reads it back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sir_convert_a_lot.backends.pictures import PictureSet, png_of


@dataclass(frozen=True)
class Exported:
    markdown: str
    pictures: tuple[tuple[str, bytes], ...] = ()
    link_prefix: str = ""
    docling_json: bytes | None = None
    warnings: tuple[str, ...] = ()


def export_document(document: Any, images: str, formats: tuple[str, ...]) -> Exported:
    """The outputs of one converted document, as ``images`` and ``formats`` ask."""
    from docling_core.types.doc import ImageRefMode

    if images == "placeholder":
        markdown = document.export_to_markdown()
        found = None
    else:
        found = take_pictures(document)
        markdown = document.export_to_markdown(image_mode=ImageRefMode.REFERENCED)
    lossless = docling_json(document) if "docling_json" in formats else None
    return Exported(
        markdown=str(markdown),
        pictures=tuple(found.pictures) if found else (),
        link_prefix=found.prefix if found else "",
        docling_json=lossless,
        warnings=found.warnings() if found else (),
    )


def take_pictures(document: Any, found: PictureSet | None = None) -> PictureSet:
    """Every picture of ``document`` (the body's in reading order, then any other), as PNG
    within the limits (``found``'s, by default ``backends.pictures``'); each picture's image is
    replaced by a reference to its link target, or removed when it is left out."""
    from docling_core.types.doc import ContentLayer, ImageRef, PictureItem, Size

    found = found if found is not None else PictureSet()
    ordered = [
        item
        for item, _level in document.iterate_items(
            included_content_layers=set(ContentLayer), traverse_pictures=True
        )
        if isinstance(item, PictureItem)
    ]
    seen = {id(item) for item in ordered}
    ordered += [item for item in document.pictures if id(item) not in seen]
    for item in ordered:
        image = item.get_image(document) if item.image is not None else None
        encoded = png_of(image) if image is not None else None
        target = found.add(encoded[0] if encoded else None)
        if target is None or encoded is None:
            item.image = None
            continue
        width, height = encoded[1]
        item.image = ImageRef(
            mimetype="image/png",
            dpi=item.image.dpi,
            size=Size(width=width, height=height),
            uri=Path(target),
        )
    return found


def docling_json(document: Any) -> bytes:
    """docling-core's lossless export, as compact UTF-8 JSON."""
    data = document.export_to_dict()
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
