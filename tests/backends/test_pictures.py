"""Pictures (``output.images``) and the extra outputs: what a user finds in the outbox.

The end-to-end tests run the pymupdf backend (its layout model finds the pictures of a PDF made
here with pymupdf); docling's picture path is in test_docling_export.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from harness.pdfs import pdf_with_pictures
from sir_convert_a_lot.backends.pictures import PictureSet, png_of
from sir_convert_a_lot.engine.protocol import Converted
from sir_convert_a_lot.jobs.artifacts import listing, render
from tests.daemon import Daemon, run_cli
from tests.helpers import files_under, wait_for, write_config

pytestmark = pytest.mark.slow  # models, workers or Ray: seconds per test

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LINK = re.compile(r"!\[[^\]]*\]\(([^)]*)\)")


def _links(markdown: str) -> list[str]:
    return LINK.findall(markdown)


def _sidecar(folder: Path, stem: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
    return document


def _assert_artifacts_match_files(folder: Path, stem: str) -> list[dict[str, Any]]:
    """Every listed artifact exists beside the Markdown with the listed size and digest."""
    artifacts: list[dict[str, Any]] = _sidecar(folder, stem)["result"]["artifacts"]
    for entry in artifacts:
        data = (folder / entry["name"]).read_bytes()
        assert entry["size_bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    return artifacts


def _convert(tmp_path: Path, pdf: Path, images: str, out: Path) -> None:
    config = write_config(tmp_path / f"config-{images}", output={"images": images})
    result = run_cli("convert", str(pdf), "--out", str(out), config=config)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def report(tmp_path: Path) -> Path:
    """A PDF with three pictures, under a name that needs escaping in a link."""
    path = tmp_path / "Quarterly report (draft) #1 – Zürich.pdf"
    path.write_bytes(pdf_with_pictures(3))
    return path


# -- worker side: our names, the limits --------------------------------------------------------


def test_pictures_get_our_own_names_in_order_and_links_under_a_random_prefix() -> None:
    found = PictureSet()
    first = found.add(b"one")
    second = found.add(b"two")

    assert found.pictures == [("picture-0001.png", b"one"), ("picture-0002.png", b"two")]
    assert first == found.prefix + "picture-0001.png"
    assert second == found.prefix + "picture-0002.png"
    assert PictureSet().prefix != found.prefix  # random per document
    assert found.warnings() == ()


def test_pictures_past_the_count_or_byte_limit_are_dropped_with_a_warning() -> None:
    by_count = PictureSet(max_pictures=2)
    targets = [by_count.add(b"x") for _ in range(5)]
    assert targets[2:] == [None, None, None]
    assert by_count.warnings() == ("pictures_dropped:3/5",)

    by_bytes = PictureSet(max_bytes=10)
    assert by_bytes.add(b"123456") is not None
    assert by_bytes.add(b"1234567") is None  # would pass 10 bytes in all
    assert by_bytes.add(b"1234") is not None  # a smaller one still fits
    assert by_bytes.add(None) is None  # found, but nothing to draw
    assert [name for name, _ in by_bytes.pictures] == ["picture-0001.png", "picture-0002.png"]
    assert by_bytes.warnings() == ("pictures_dropped:2/4",)


def test_a_huge_picture_is_scaled_down_before_it_is_encoded() -> None:
    from PIL import Image

    encoded = png_of(Image.new("RGB", (6000, 4000), (10, 20, 30)))

    assert encoded is not None
    data, (width, height) = encoded
    assert data.startswith(PNG_MAGIC)
    assert width * height <= 16_000_000 and width / height == pytest.approx(1.5, rel=0.01)
    assert Image.open(__import__("io").BytesIO(data)).size == (width, height)


# -- publish side: links resolved for the stem -------------------------------------------------


def _answer(markdown: str, prefix: str, docling_json: bytes | None = None) -> Converted:
    return Converted(
        "job_x",
        markdown,
        1,
        "docling",
        "cpu",
        False,
        (),
        {},
        1,
        pictures=(("picture-0001.png", PNG_MAGIC + b"1"), ("../evil.png", b"2")),
        link_prefix=prefix,
        docling_json=docling_json,
    )


def test_referenced_links_are_percent_encoded_relative_paths_and_plain_in_the_json() -> None:
    prefix = "sca-picture-" + "0" * 32 + "/"
    lossless = json.dumps({"uri": prefix + "picture-0001.png"}).encode()
    markdown = f"![Image]({prefix}picture-0001.png)\n\nText that says {prefix[:-1]}x stays.\n"

    rendered = render(_answer(markdown, prefix, lossless), "referenced", "a (2) #ü")

    text = rendered.markdown.decode()
    assert _links(text) == ["a%20%282%29%20%23%C3%BC_artifacts/picture-0001.png"]
    assert unquote(_links(text)[0]) == "a (2) #ü_artifacts/picture-0001.png"
    assert f"Text that says {prefix[:-1]}x stays." in text
    assert rendered.docling_json is not None
    assert json.loads(rendered.docling_json) == {"uri": "a (2) #ü_artifacts/picture-0001.png"}
    # a name the worker did not make ours is never written
    assert rendered.pictures == (("picture-0001.png", PNG_MAGIC + b"1"),)
    assert [entry["name"] for entry in listing("a (2) #ü", rendered)] == [
        "a (2) #ü_artifacts/picture-0001.png",
        "a (2) #ü.docling.json",
    ]


def test_embedded_links_are_png_data_uris_and_no_file_is_written() -> None:
    prefix = "sca-picture-" + "1" * 32 + "/"
    rendered = render(_answer(f"![Image]({prefix}picture-0001.png)\n", prefix), "embedded", "a")

    (link,) = _links(rendered.markdown.decode())
    assert link.startswith("data:image/png;base64,")
    assert base64.b64decode(link.split(",", 1)[1]) == PNG_MAGIC + b"1"
    assert rendered.pictures == ()
    assert listing("a", rendered) == []


# -- end to end, one-shot and daemon (pymupdf) --------------------------------------------------


def test_referenced_pictures_are_files_beside_the_markdown_that_its_links_reach(
    tmp_path: Path, report: Path
) -> None:
    out = tmp_path / "out"
    _convert(tmp_path, report, "referenced", out)

    stem = report.stem
    markdown = (out / f"{stem}.md").read_text(encoding="utf-8")
    links = _links(markdown)
    assert len(links) == 3
    for number, link in enumerate(links, start=1):
        assert "/" in link and " " not in link and "(" not in link  # a working link
        target = out / unquote(link)  # relative to the Markdown's folder
        assert target.read_bytes().startswith(PNG_MAGIC)
        assert target.name == f"picture-{number:04d}.png"
    artifacts = _assert_artifacts_match_files(out, stem)
    assert [entry["name"] for entry in artifacts] == [
        f"{stem}_artifacts/picture-{n:04d}.png" for n in (1, 2, 3)
    ]
    assert sorted(os.listdir(out / f"{stem}_artifacts")) == [
        f"picture-{n:04d}.png" for n in (1, 2, 3)
    ]
    metadata = _sidecar(out, stem)["result"]["conversion_metadata"]
    assert metadata["options"]["images"] == "referenced"
    # the whole set moves with the outbox: nothing points outside it
    moved = tmp_path / "elsewhere"
    out.rename(moved)
    assert all((moved / unquote(link)).is_file() for link in links)


def test_embedded_pictures_are_inline_and_placeholder_is_todays_markdown(
    tmp_path: Path, report: Path
) -> None:
    _convert(tmp_path, report, "embedded", tmp_path / "embedded")
    _convert(tmp_path, report, "placeholder", tmp_path / "placeholder")

    embedded = (tmp_path / "embedded" / f"{report.stem}.md").read_text(encoding="utf-8")
    links = _links(embedded)
    assert len(links) == 3
    for link in links:
        head, data = link.split(",", 1)
        assert head == "data:image/png;base64"
        assert base64.b64decode(data).startswith(PNG_MAGIC)
    assert files_under(tmp_path / "embedded") == [f"{report.stem}.json", f"{report.stem}.md"]
    assert _sidecar(tmp_path / "embedded", report.stem)["result"]["artifacts"] == []

    placeholder = (tmp_path / "placeholder" / f"{report.stem}.md").read_text(encoding="utf-8")
    assert _links(placeholder) == []
    assert "Paragraph 2 comes before figure 2." in placeholder
    assert files_under(tmp_path / "placeholder") == [f"{report.stem}.json", f"{report.stem}.md"]
    fingerprints = {
        _sidecar(tmp_path / mode, report.stem)["result"]["conversion_metadata"][
            "options_fingerprint"
        ]
        for mode in ("embedded", "placeholder")
    }
    assert len(fingerprints) == 2  # the images mode changes the output, and the fingerprint


def test_a_second_result_with_the_same_name_renames_its_whole_set(
    tmp_path: Path, report: Path
) -> None:
    out = tmp_path / "out"
    _convert(tmp_path, report, "referenced", out)
    _convert(tmp_path, report, "referenced", out)

    stem, second = report.stem, f"{report.stem} (2)"
    members = (".md", ".json", "_artifacts")
    assert sorted(os.listdir(out)) == sorted(s + m for s in (stem, second) for m in members)
    links = _links((out / f"{second}.md").read_text(encoding="utf-8"))
    assert links and all(unquote(link).startswith(f"{second}_artifacts/") for link in links)
    assert all((out / unquote(link)).is_file() for link in links)
    artifacts = _assert_artifacts_match_files(out, second)
    assert all(entry["name"].startswith(f"{second}_artifacts/") for entry in artifacts)


def test_a_folder_named_like_the_artifacts_blocks_the_stem(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "doc_artifacts").mkdir(parents=True)
    (out / "doc_artifacts" / "mine.txt").write_text("someone's", encoding="utf-8")
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(pdf_with_pictures(1))

    _convert(tmp_path, pdf, "referenced", out)

    assert os.listdir(out / "doc_artifacts") == ["mine.txt"]
    assert sorted(os.listdir(out / "doc (2)_artifacts")) == ["picture-0001.png"]
    assert (out / "doc (2).md").exists() and not (out / "doc.md").exists()


@pytest.mark.parametrize("point", ["picture_tmp_written", "after_pictures"])
def test_a_crash_while_publishing_pictures_then_restart_gives_one_set(
    tmp_path: Path, point: str
) -> None:
    config = write_config(tmp_path, output={"images": "referenced"})
    with Daemon(config, crash_at=point, log_name="crashing").start() as crashing:
        (tmp_path / "inbox" / "doc.pdf").write_bytes(pdf_with_pictures(2))
        assert crashing.wait(timeout=60) == -9
    # Killed before its commit: nothing is in place, the pictures wait in the hidden stage.
    left = files_under(tmp_path / "outbox")
    assert not [name for name in left if name.startswith("doc")]
    assert any(name.startswith(".sca-tmp-") and "/doc_artifacts/" in name for name in left)
    with Daemon(config).start() as daemon:
        wait_for(lambda: (tmp_path / "outbox" / "doc.json").exists(), timeout=60)
        daemon.terminate()

    assert files_under(tmp_path / "outbox") == [
        "doc.json",
        "doc.md",
        "doc_artifacts/picture-0001.png",
        "doc_artifacts/picture-0002.png",
    ]
    _assert_artifacts_match_files(tmp_path / "outbox", "doc")
    markdown = (tmp_path / "outbox" / "doc.md").read_text(encoding="utf-8")
    assert [unquote(link) for link in _links(markdown)] == [
        "doc_artifacts/picture-0001.png",
        "doc_artifacts/picture-0002.png",
    ]


# -- the config ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["run"], ["convert", "x.pdf"]])
def test_docling_json_with_the_pymupdf_backend_is_refused_at_start_naming_the_key(
    tmp_path: Path, command: list[str]
) -> None:
    config = write_config(tmp_path, output={"formats": ["markdown", "docling_json"]})

    result = run_cli(*command, config=config)

    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "output.formats" in line and "pymupdf" in line
    assert files_under(tmp_path / "outbox") == []
