"""The docling backend's pictures and its lossless JSON (``output.images``, ``output.formats``).

The random-weight stand-in layout model labels no picture, so the picture path is tested two
ways: on a ``DoclingDocument`` built here (the export function itself), and through docling's
real pipeline with the layout model's answer steered to hold a picture where the PDF has one
(cropping, assembly and export are docling's own). A one-shot conversion checks the published
``<stem>.docling.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from harness.pdfs import pdf_with_pictures
from sir_convert_a_lot.backends.base import BackendContext
from sir_convert_a_lot.backends.docling import DoclingBackend
from sir_convert_a_lot.backends.docling_export import export_document, take_pictures
from sir_convert_a_lot.backends.pdf_open import open_pdf
from sir_convert_a_lot.backends.pictures import PictureSet
from sir_convert_a_lot.engine.protocol import Converted
from sir_convert_a_lot.jobs.artifacts import render
from sir_convert_a_lot.options import ConversionOptions
from tests.daemon import run_cli
from tests.helpers import docling_config, write_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Where pdf_with_pictures(1) draws its picture (points, top-left origin).
PICTURE_BOX = (72.0, 145.0, 312.0, 280.0)


pytestmark = [pytest.mark.usefixtures("offline"), pytest.mark.slow]  # models: seconds per test


def _document_with_pictures(count: int) -> Any:
    from docling_core.types.doc import (
        BoundingBox,
        DoclingDocument,
        ImageRef,
        ProvenanceItem,
        Size,
    )
    from PIL import Image

    document = DoclingDocument(name="built")
    document.add_page(page_no=1, size=Size(width=600, height=800))
    for number in range(count):
        text = f"Before picture {number + 1}."
        above = BoundingBox(l=10, t=80 + number * 50, r=200, b=95 + number * 50)
        prov = ProvenanceItem(page_no=1, bbox=above, charspan=(0, len(text)))
        document.add_text(label="text", text=text, prov=prov)
        image = Image.new("RGB", (40 + number, 30), (200, 10 * number, 30))
        bbox = BoundingBox(l=10, t=100 + number * 50, r=50, b=130 + number * 50)
        prov = ProvenanceItem(page_no=1, bbox=bbox, charspan=(0, 0))
        document.add_picture(image=ImageRef.from_pil(image, dpi=72), prov=prov)
    return document


def _items_with_provenance(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for kind in ("texts", "pictures", "tables"):
        yield from data.get(kind, [])


def test_the_export_links_each_picture_and_leaves_a_placeholder_past_the_limit() -> None:
    from docling_core.types.doc import ImageRefMode

    document = _document_with_pictures(3)
    found = take_pictures(document, PictureSet(max_pictures=2))

    markdown = document.export_to_markdown(image_mode=ImageRefMode.REFERENCED)
    assert [name for name, _ in found.pictures] == ["picture-0001.png", "picture-0002.png"]
    assert all(png.startswith(PNG_MAGIC) for _, png in found.pictures)
    assert f"![Image]({found.prefix}picture-0001.png)" in markdown
    assert f"![Image]({found.prefix}picture-0002.png)" in markdown
    assert markdown.count("<!-- image -->") == 1  # the third, dropped
    assert found.warnings() == ("pictures_dropped:1/3",)


def test_the_lossless_json_keeps_provenance_and_references_the_published_pictures() -> None:
    from docling_core.types.doc import DoclingDocument

    exported = export_document(
        _document_with_pictures(2), "referenced", ("markdown", "docling_json")
    )
    answer = Converted(
        "job_x",
        exported.markdown,
        1,
        "docling",
        "cpu",
        False,
        (),
        {},
        1,
        pictures=exported.pictures,
        link_prefix=exported.link_prefix,
        docling_json=exported.docling_json,
    )

    referenced = render(answer, "referenced", "my doc")
    assert referenced.docling_json is not None
    data = json.loads(referenced.docling_json)
    uris = [picture["image"]["uri"] for picture in data["pictures"]]
    assert uris == ["my doc_artifacts/picture-0001.png", "my doc_artifacts/picture-0002.png"]
    assert "base64" not in referenced.docling_json.decode()  # no image data inline
    for item in _items_with_provenance(data):
        (prov,) = item["prov"]
        assert prov["page_no"] == 1 and set(prov["bbox"]) >= {"l", "t", "r", "b"}
    reloaded = DoclingDocument.model_validate_json(referenced.docling_json)
    assert len(reloaded.pictures) == 2 and len(reloaded.texts) == 2

    embedded = render(answer, "embedded", "my doc")
    assert embedded.docling_json is not None
    uris = [p["image"]["uri"] for p in json.loads(embedded.docling_json)["pictures"]]
    assert all(uri.startswith("data:image/png;base64,") for uri in uris)


class _PictureLayout:
    """Stands in front of docling's layout model and adds, to each page it labelled, a picture
    where pdf_with_pictures(1) drew one: what a trained model would find."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __call__(self, conv_res: Any, pages: Any) -> Iterator[Any]:
        from docling.datamodel.base_models import Cluster
        from docling_core.types.doc import BoundingBox, CoordOrigin, DocItemLabel

        for page in self._model(conv_res, pages):
            clusters = page.predictions.layout.clusters
            left, top, right, bottom = PICTURE_BOX
            box = BoundingBox(l=left, t=top, r=right, b=bottom, coord_origin=CoordOrigin.TOPLEFT)
            clusters.append(
                Cluster(id=10_000, label=DocItemLabel.PICTURE, bbox=box, confidence=0.99)
            )
            yield page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def test_docling_crops_the_picture_its_layout_found_and_exports_it(
    stand_in_models: Path,
) -> None:
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sca-cuda")
    backend = DoclingBackend(
        BackendContext("cpu", 0, model_thread, models_path=str(stand_in_models))
    )
    options = ConversionOptions(
        backend_strategy="docling",
        ocr_mode="off",
        table_mode="fast",
        images="referenced",
        formats=("markdown", "docling_json"),
    )
    backend.load((options,))
    (converter,) = backend._converters.values()
    (pipeline,) = converter.initialized_pipelines.values()
    pipeline.layout_model.model = _PictureLayout(pipeline.layout_model.model)

    result = backend.convert(open_pdf(pdf_with_pictures(1), 10), options, lambda _p, _t: None)
    model_thread.shutdown()

    ((name, png),) = result.pictures
    assert name == "picture-0001.png" and png.startswith(PNG_MAGIC)
    assert f"]({result.link_prefix}picture-0001.png)" in result.markdown
    assert result.docling_json is not None
    (picture,) = json.loads(result.docling_json)["pictures"]
    assert picture["image"]["uri"] == result.link_prefix + "picture-0001.png"
    assert picture["image"]["dpi"] == 144  # cropped from pages drawn at twice 72 dpi
    (prov,) = picture["prov"]
    assert prov["page_no"] == 1


def test_a_one_shot_docling_conversion_publishes_the_docling_json(
    tmp_path: Path, stand_in_models: Path
) -> None:
    from docling_core.types.doc import DoclingDocument

    config = write_config(
        tmp_path,
        **docling_config(tmp_path, stand_in_models, table_mode="fast"),
        output={"images": "referenced", "formats": ["markdown", "docling_json"]},
    )
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(pdf_with_pictures(1))
    out = tmp_path / "out"

    result = run_cli("convert", str(pdf), "--out", str(out), config=config, timeout=300)

    assert result.returncode == 0, result.stderr
    assert pdf.exists()  # convert reads in place, never moves
    sidecar = json.loads((out / "doc.json").read_text(encoding="utf-8"))
    metadata = sidecar["result"]["conversion_metadata"]  # the governed fallback, one-shot
    assert (metadata["backend_used"], metadata["acceleration_used"]) == ("docling", "cpu")
    assert "gpu_prefer_fell_back_to_cpu" in sidecar["result"]["warnings"]
    lossless = (out / "doc.docling.json").read_bytes()
    entry = {
        "name": "doc.docling.json",
        "size_bytes": len(lossless),
        "sha256": hashlib.sha256(lossless).hexdigest(),
    }
    assert entry in sidecar["result"]["artifacts"]
    assert sidecar["result"]["conversion_metadata"]["options"]["formats"] == [
        "markdown",
        "docling_json",
    ]
    document = DoclingDocument.model_validate_json(lossless)
    assert (document.name, document.origin.filename) == ("doc", "doc.pdf")  # its file's name
    assert document.pages[1].size.width == pytest.approx(595, abs=1)
    assert all(item.prov and item.prov[0].page_no == 1 for item in document.texts)


def test_the_lossless_json_names_a_file_whose_name_is_not_utf8_readably() -> None:
    from docling_core.types.doc import DoclingDocument
    from docling_core.types.doc.document import DocumentOrigin

    from sir_convert_a_lot.backends import docling
    from sir_convert_a_lot.backends.docling_export import docling_json

    origin = DocumentOrigin(filename="document-7.pdf", mimetype="application/pdf", binary_hash=1)
    document = DoclingDocument(name="document-7", origin=origin)
    docling._name_after_file(document, os.fsdecode(b"r\xe9sum\xe9.pdf"))  # Latin-1 bytes
    written = json.loads(docling_json(document))
    assert (written["name"], written["origin"]["filename"]) == (
        "r\\xe9sum\\xe9",
        "r\\xe9sum\\xe9.pdf",
    )
