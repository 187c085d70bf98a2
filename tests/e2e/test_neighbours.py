"""A document's outputs do not depend on its neighbours: converted alone, or dropped at once
with fifteen others whose pages share its model calls, byte-identical Markdown, lossless JSON
and sidecar ``result`` (contract, section 6; the layout model reads each page in a slab of its
own shape, ``backends.layout_slabs``). Through the real daemon, with the docling backend on the
stand-in models."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon
from tests.helpers import (
    OFFLINE,
    SAMPLES,
    docling_config,
    make_pdf,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow

TABLE_PAGE = SAMPLES / "2305.03393v1-pg9.pdf"  # a page with a table: the TableFormer path runs
SAMPLE_NEIGHBOURS = ("mathfuncs.pdf", "mathfuncs_colswitch.pdf")
STAGES = ("layout", "table")
# Whether the page's calls meet the others' depends on the threads' timing (the daemon claims
# the files one after another); each round checks the outputs, and one must have shared.
ROUNDS = 4

Outputs = tuple[bytes, bytes, dict[str, Any]]  # Markdown, lossless JSON, sidecar


def _drop(inbox: Path, staging: Path, files: dict[str, Path]) -> None:
    """Each file written in full elsewhere, then renamed into the inbox: all appear at once."""
    staging.mkdir(exist_ok=True)
    for name, source in files.items():
        shutil.copyfile(source, staging / name)
    for name in files:
        os.rename(staging / name, inbox / name)


def _take_outputs(outbox: Path, stems: list[str], into: Path) -> dict[str, Outputs]:
    """Each stem's outputs once every sidecar is there, moved to ``into`` so that the next drop
    of the same names gets the same output names."""
    wait_for(
        lambda: all(
            (outbox / f"{s}.json").exists() or (outbox / f"{s}.error.json").exists() for s in stems
        ),
        timeout=240,
    )
    shutil.move(outbox, into)
    outbox.mkdir()
    found = {}
    for stem in stems:
        assert (into / f"{stem}.json").exists(), (into / f"{stem}.error.json").read_text()
        sidecar = json.loads((into / f"{stem}.json").read_text(encoding="utf-8"))
        lossless = (into / f"{stem}.docling.json").read_bytes()
        found[stem] = ((into / f"{stem}.md").read_bytes(), lossless, sidecar)
    return found


def _assert_same_outputs(together: Outputs, alone: Outputs) -> None:
    """Byte-identical Markdown, lossless JSON and ``result`` (its artifacts' hashes included)."""
    (markdown, lossless, sidecar), (markdown_alone, lossless_alone, sidecar_alone) = together, alone
    assert markdown == markdown_alone
    assert lossless == lossless_alone
    assert sidecar["result"] == sidecar_alone["result"]


def _shared_stages(sidecar: dict[str, Any]) -> list[str]:
    """The model stages in which some call carried other documents' pages besides this one's."""
    batching = sidecar["execution"]["batching"]
    return [s for s in STAGES if batching[s]["share_of_calls"] < batching[s]["calls"]]


def test_a_document_comes_out_the_same_alone_and_among_fifteen_others_sharing_its_calls(
    tmp_path: Path, stand_in_models: Path
) -> None:
    config = write_config(
        tmp_path,
        output={"formats": ["markdown", "docling_json"]},
        **docling_config(tmp_path, stand_in_models, batch=16, table_mode="accurate"),
    )
    inbox, outbox, staging = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "staging"
    neighbours = {name: SAMPLES / name for name in SAMPLE_NEIGHBOURS}
    for number in range(15 - len(neighbours)):
        text = f"Neighbour {number} has a paragraph of its own, number {number}."
        neighbours[f"neighbour-{number:02}.pdf"] = make_pdf(tmp_path / f"n{number}.pdf", text=text)
    stems = ["table", *(Path(name).stem for name in neighbours)]
    with Daemon(config, env=OFFLINE).start(timeout=300) as daemon:
        _drop(inbox, staging, {"table.pdf": TABLE_PAGE})
        alone = _take_outputs(outbox, ["table"], tmp_path / "alone")["table"]
        for round_number in range(1, ROUNDS + 1):
            _drop(inbox, staging, {"table.pdf": TABLE_PAGE, **neighbours})
            together = _take_outputs(outbox, stems, tmp_path / f"round-{round_number}")
            _assert_same_outputs(together["table"], alone)
            _markdown, lossless, sidecar = together["table"]
            if _shared_stages(sidecar):
                break
        assert daemon.terminate() == 0
    # Not vacuous: alone, each of the page's calls was its own; in the last round, its pages
    # shared a layout or a table call (or both) with the others' pages.
    assert _shared_stages(alone[2]) == [] and _shared_stages(sidecar), sidecar["execution"]
    assert "table" in sidecar["result"]["conversion_metadata"]["stage_devices"]  # tables ran
    origin = json.loads(lossless)
    assert (origin["name"], origin["origin"]["filename"]) == ("table", "table.pdf")  # its own
