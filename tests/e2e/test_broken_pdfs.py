"""A converter's "this file is broken" ends as ``pdf_unreadable`` (not retryable), never as an
internal error that invites retries; genuine converter faults stay internal errors.

The broken files are pdf.js test PDFs (fixtures/broken_pdfs/ATTRIBUTION.md); the table of all
59 is in docs/reference/reliability.md.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sir_convert_a_lot.backends.base import BackendResult
from sir_convert_a_lot.backends.file_faults import broken_file, mupdf_file_error
from sir_convert_a_lot.backends.pdf_open import (
    OpenedPdf,
    no_page_has_an_area,
    open_pdf,
    resource_cycle,
)
from sir_convert_a_lot.engine.protocol import ConvertRequest, Failed, WorkerSettings
from sir_convert_a_lot.engine.worker import _Worker
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.options import ConversionOptions
from tests.daemon import run_cli
from tests.helpers import REPO, Sink, make_pdf, write_config

BROKEN = REPO / "fixtures" / "broken_pdfs"
CYCLE = BROKEN / "Pages-tree-refs.pdf"
BAD_COUNT = BROKEN / "poppler-67295-0.pdf"


def _mupdf_format_error() -> Exception:
    """The exception MuPDF itself raises for the cycle, caught by loading the page that the
    cycle hides without any preflight."""
    import pymupdf

    with pymupdf.open(CYCLE) as document:
        try:
            document.load_page(1)
        except Exception as exc:  # whatever MuPDF raises
            return exc
    raise AssertionError("MuPDF loaded page 2 of a page tree with a cycle")


def _assert_one_plain_sentence(message: str) -> None:
    assert "\n" not in message
    assert message.endswith(".") and message.count(". ") == 0
    assert "code=" not in message  # the parser's words go to details, not to the person


# -- which exceptions are the file's fault ----------------------------------------------------


def test_mupdfs_format_error_on_the_files_data_is_the_files_fault() -> None:
    assert mupdf_file_error(_mupdf_format_error()) == "format"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (RuntimeError("code=7: Invalid number of pages"), "format"),
        (RuntimeError("code=8: expected object number"), "syntax"),
        (RuntimeError("code=4: invalid argument"), None),  # FZ_ERROR_ARGUMENT: our misuse
        (RuntimeError("code=2: cannot open file"), None),  # FZ_ERROR_SYSTEM: the machine
        (RuntimeError("injected fault"), None),
        (ValueError("code=7: not MuPDF's RuntimeError"), None),
        (MemoryError(), None),
        (KeyError("boxes"), None),
    ],
)
def test_only_mupdfs_format_and_syntax_verdicts_count(exc: Exception, kind: str | None) -> None:
    assert mupdf_file_error(exc) == kind
    assert (broken_file(exc, "parse_failed") is None) == (kind is None)


def test_a_wrapper_raised_from_mupdfs_verdict_still_counts() -> None:
    try:
        try:
            raise _mupdf_format_error()
        except Exception as inner:
            raise TypeError("a library wrapped it") from inner
    except TypeError as outer:
        assert mupdf_file_error(outer) == "format"


def test_a_bug_met_while_handling_mupdfs_verdict_stays_internal() -> None:
    try:
        try:
            raise _mupdf_format_error()
        except Exception:
            boxes: dict[str, int] = {}
            boxes["missing"]  # a handler's own bug: implicitly chained, not raised from
    except KeyError as bug:
        assert bug.__context__ is not None
        assert mupdf_file_error(bug) is None


# -- preflight: the page tree is checked before any backend ------------------------------------


@pytest.mark.parametrize(
    ("path", "parser_message", "page"),
    [
        (CYCLE, "code=7: cycle in page tree", 2),
        (BAD_COUNT, "code=7: Invalid number of pages", None),
    ],
)
def test_open_pdf_refuses_a_broken_page_tree(
    path: Path, parser_message: str, page: int | None
) -> None:
    with pytest.raises(JobFailure) as caught:
        open_pdf(path.read_bytes(), 100)
    failure = caught.value
    assert failure.code is ErrorCode.PDF_UNREADABLE
    assert failure.code.retryable is False
    assert failure.details["reason"] == "page_tree_broken"
    assert failure.details["parser_message"] == parser_message
    assert failure.details.get("page") == page
    _assert_one_plain_sentence(failure.message)


def test_an_encryption_no_page_survives_is_pdf_encrypted_not_a_truncated_file() -> None:
    """pdf.js issue19484: it opens without a password, yet decrypts to no page at all."""
    with pytest.raises(JobFailure) as caught:
        open_pdf((BROKEN / "issue19484_1.pdf").read_bytes(), 100)
    failure = caught.value
    assert failure.code is ErrorCode.PDF_ENCRYPTED and failure.code.retryable is False
    assert failure.details == {
        "reason": "unreadable_encryption",
        "encryption": "Standard V4 R4 40-bit RC4",
    }
    assert "truncated" not in failure.message
    _assert_one_plain_sentence(failure.message)


def test_open_pdf_still_opens_a_good_pdf_with_every_page(tmp_path: Path) -> None:
    opened = open_pdf(make_pdf(tmp_path / "good.pdf", pages=3).read_bytes(), 100)
    assert opened.pages == 3
    opened.document.close()


# -- the worker: a parser's verdict mid-conversion, and a genuine bug --------------------------


class _RaisingBackend:
    name = "pymupdf"

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def convert(self, pdf: OpenedPdf, options: ConversionOptions, progress: Any) -> BackendResult:
        raise self.exc


def _worker_failure(tmp_path: Path, exc: Exception) -> Failed:
    worker = _Worker(conn=Sink(), settings=WorkerSettings(0, "", 10**8, 100))
    worker.backends[("pymupdf", "cpu")] = _RaisingBackend(exc)  # type: ignore[assignment]
    source = make_pdf(tmp_path / "good.pdf")
    options = ConversionOptions(backend_strategy="pymupdf", ocr_mode="off")
    request = ConvertRequest("job_x", str(source), "good.pdf", options, "cpu")
    try:
        result = worker._convert(request)
    finally:
        worker.model_thread.shutdown()
    assert isinstance(result, Failed)
    return result


def test_the_worker_reports_a_parser_verdict_mid_conversion_as_pdf_unreadable(
    tmp_path: Path,
) -> None:
    failed = _worker_failure(tmp_path, _mupdf_format_error())
    assert failed.code == "pdf_unreadable"
    assert failed.details["reason"] == "parse_failed"
    assert failed.details["parser_error"] == "format"
    _assert_one_plain_sentence(failed.message)


def test_the_worker_keeps_a_genuine_converter_fault_an_internal_error(tmp_path: Path) -> None:
    failed = _worker_failure(tmp_path, KeyError("boxes"))
    assert failed.code == "conversion_internal_error"
    assert ErrorCode(failed.code).retryable is True
    assert failed.details["exception"] == "KeyError"


# -- end to end: the real convert command -------------------------------------------------------


@pytest.mark.slow
def test_convert_fails_a_page_tree_with_a_cycle_as_unreadable_and_leaves_it_in_place(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    before = hashlib.sha256(CYCLE.read_bytes()).hexdigest()
    out = tmp_path / "out"
    result = run_cli("convert", str(CYCLE), "--out", str(out), config=config, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    envelope = json.loads((out / "Pages-tree-refs.error.json").read_text())
    error = envelope["error"]
    assert error["code"] == "pdf_unreadable"
    assert error["retryable"] is False
    assert error["details"]["reason"] == "page_tree_broken"
    assert not (out / "Pages-tree-refs.md").exists()
    assert hashlib.sha256(CYCLE.read_bytes()).hexdigest() == before


# -- docling: its parser's verdict on the bytes, and a pipeline fault -------------------------


def _docling_error(component: str, category: str) -> Any:
    from docling.datamodel.base_models import DoclingComponentType, ErrorItem, FailureCategory

    return ErrorItem(
        component_type=DoclingComponentType(component),
        module_name="",
        error_message="docling-parse could not load document 77c8: Failed to load document",
        category=FailureCategory(category),
    )


class _FailingConverter:
    """Stands in for docling's DocumentConverter: the conversion ends FAILURE with ``errors``."""

    def __init__(self, errors: list[Any]) -> None:
        self.errors = errors

    def convert(self, stream: Any, raises_on_error: bool, progress_callback: Any) -> Any:
        from docling.datamodel.base_models import ConversionStatus

        return SimpleNamespace(status=ConversionStatus.FAILURE, errors=self.errors, document=None)


def _docling_failure(errors: list[Any]) -> JobFailure:
    from concurrent.futures import ThreadPoolExecutor

    from sir_convert_a_lot.backends.base import BackendContext
    from sir_convert_a_lot.backends.docling import DoclingBackend

    with ThreadPoolExecutor(max_workers=1) as model_thread:
        backend = DoclingBackend(BackendContext("cpu", 0, model_thread))
        pdf = OpenedPdf(data=CYCLE.read_bytes(), document=None, pages=2, repaired=False)
        with pytest.raises(JobFailure) as caught:
            backend._run(_FailingConverter(errors), pdf, "cycle.pdf", lambda _page, _total: None)
    return caught.value


@pytest.mark.slow
def test_docling_parses_rejection_of_the_input_is_pdf_unreadable() -> None:
    failure = _docling_failure([_docling_error("user_input", "backend_failure")])
    assert failure.code is ErrorCode.PDF_UNREADABLE
    assert failure.details["reason"] == "parse_failed"
    assert failure.details["parser"] == "docling-parse"
    _assert_one_plain_sentence(failure.message)


@pytest.mark.parametrize(
    "errors",
    [
        [("pipeline", "unknown")],  # an exception inside docling's pipeline
        [("user_input", "policy")],  # refused by a limit, not unreadable
        [("user_input", "backend_failure"), ("pipeline", "unknown")],
        [],
    ],
)
def test_other_docling_failures_stay_internal_errors(errors: list[tuple[str, str]]) -> None:
    failure = _docling_failure([_docling_error(c, k) for c, k in errors])
    assert failure.code is ErrorCode.CONVERSION_INTERNAL_ERROR
    assert failure.details["reason"] == "docling_failed"


# -- resource cycles: docling-parse follows them until the worker dies --------------------------

XOBJECT_CYCLE = BROKEN / "issue19800.pdf"
PATTERN_CYCLE = BROKEN / "operator_list_cycle.pdf"


def _nested_forms_pdf(depth: int) -> bytes:
    """A page that draws a form that draws a form ... ``depth`` deep, with no loop."""
    import pymupdf

    inner = pymupdf.open()
    inner.new_page(width=200, height=200).insert_text((20, 40), "innermost", fontsize=11)
    for _ in range(depth):
        outer = pymupdf.open()
        outer.new_page(width=200, height=200).show_pdf_page(pymupdf.Rect(0, 0, 200, 200), inner)
        inner = outer
    data: bytes = inner.tobytes()
    return data


@pytest.mark.parametrize(("path", "xref"), [(XOBJECT_CYCLE, 6), (PATTERN_CYCLE, 12)])
def test_resource_cycle_finds_forms_and_patterns_that_draw_themselves(
    path: Path, xref: int
) -> None:
    assert resource_cycle(path.read_bytes()) == xref


def test_resource_cycle_finds_none_in_deeply_nested_forms_without_a_loop() -> None:
    assert resource_cycle(_nested_forms_pdf(depth=8)) is None


def test_docling_refuses_a_resource_cycle_before_its_parser_sees_it() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sir_convert_a_lot.backends.base import BackendContext
    from sir_convert_a_lot.backends.docling import DoclingBackend

    pdf = OpenedPdf(data=XOBJECT_CYCLE.read_bytes(), document=None, pages=1, repaired=False)
    with ThreadPoolExecutor(max_workers=1) as model_thread:
        backend = DoclingBackend(BackendContext("cpu", 0, model_thread))
        with pytest.raises(JobFailure) as caught:
            backend.convert(pdf, ConversionOptions(ocr_mode="off"), lambda _page, _total: None)
    failure = caught.value
    assert failure.code is ErrorCode.PDF_UNREADABLE
    assert failure.details == {"reason": "resource_cycle", "xref": 6}
    _assert_one_plain_sentence(failure.message)


# -- no page with an area: docling-parse can draw none of them ----------------------------------

EMPTY_BOXES = BROKEN / "boundingBox_invalid.pdf"


def _one_empty_page_of_three() -> bytes:
    import pymupdf

    document = pymupdf.open()
    for number in range(3):
        document.new_page().insert_text((72, 72), f"Page {number + 1}.", fontsize=12)
    document.xref_set_key(document[1].xref, "MediaBox", "[0 0 0 0]")
    data: bytes = document.tobytes()
    return data


def test_no_page_has_an_area_only_when_every_page_box_is_empty() -> None:
    assert no_page_has_an_area(EMPTY_BOXES.read_bytes()) is True
    # docling converts this one with page 2 missing (PARTIAL_SUCCESS): it must pass
    assert no_page_has_an_area(_one_empty_page_of_three()) is False
    assert no_page_has_an_area(XOBJECT_CYCLE.read_bytes()) is False


def test_docling_refuses_a_pdf_whose_pages_all_have_empty_boxes() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sir_convert_a_lot.backends.base import BackendContext
    from sir_convert_a_lot.backends.docling import DoclingBackend

    pdf = OpenedPdf(data=EMPTY_BOXES.read_bytes(), document=None, pages=3, repaired=False)
    with ThreadPoolExecutor(max_workers=1) as model_thread:
        backend = DoclingBackend(BackendContext("cpu", 0, model_thread))
        with pytest.raises(JobFailure) as caught:
            backend.convert(pdf, ConversionOptions(ocr_mode="off"), lambda _page, _total: None)
    assert caught.value.code is ErrorCode.PDF_UNREADABLE
    assert caught.value.details == {"reason": "no_page_area"}
    _assert_one_plain_sentence(caught.value.message)


# -- the table's tool ----------------------------------------------------------------------------


def _tool() -> Any:
    import sys

    sys.path.insert(0, str(REPO / "tools"))
    import broken_pdfs

    return broken_pdfs


def test_the_tool_calls_out_hangs_tracebacks_and_changed_originals() -> None:
    tool = _tool()
    fields: dict[str, Any] = dict.fromkeys(("code", "reason", "retryable", "message", "detail"))
    fields.update(file="a.pdf", backend="pymupdf", exit_code=0, seconds=1.0, warnings=())
    hung = tool.Run(outcome="hung", original_intact=True, traceback=False, **fields)
    assert tool.label(hung) == "**hung**"
    bad = tool.Run(outcome="succeeded", original_intact=False, traceback=True, **fields)
    assert tool.label(bad) == "succeeded, **traceback**, **original changed or gone**"
    assert tool.summary([hung, bad], ["pymupdf"])["pymupdf"]["originals_lost_or_changed"] == 1


@pytest.mark.slow
def test_the_tool_runs_convert_per_file_and_reports_each_outcome(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / CYCLE.name).write_bytes(CYCLE.read_bytes())
    report, table = tmp_path / "report.json", tmp_path / "table.md"
    command = [str(REPO / ".venv" / "bin" / "python"), str(REPO / "tools" / "broken_pdfs.py")]
    command += ["--corpus", str(corpus), "--out", str(report), "--markdown", str(table)]
    command += ["--backends", "pymupdf", "--timeout", "120"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr
    found = json.loads(report.read_text())
    assert found["missing_from_corpus"] and CYCLE.name not in found["missing_from_corpus"]
    (run,) = found["runs"]
    assert (run["code"], run["reason"], run["retryable"]) == (
        "pdf_unreadable",
        "page_tree_broken",
        False,
    )
    assert run["original_intact"] is True and run["traceback"] is False
    assert "`pdf_unreadable` (page_tree_broken)" in table.read_text()
