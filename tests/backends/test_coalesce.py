"""Cross-document batching: concurrent calls to one stage model become one call on the model
thread, each caller gets its own pages back, and one document's fault stays its own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from sir_convert_a_lot.backends.batching import BatchLog, summary
from sir_convert_a_lot.backends.coalesce import Coalescer, SharedModel


@dataclass
class _Doc:
    """What a docling conversion result looks like to the coalescer: a named input."""

    name: str
    input: Any = field(init=False)

    def __post_init__(self) -> None:
        self.input = type("Input", (), {"file": self.name})()


class _Model:
    """A stage model that tags each page with the call it was in, and may refuse a page."""

    def __init__(self, refuse: str | None = None) -> None:
        self.calls: list[tuple[list[str], int]] = []
        self.refuse = refuse

    def __call__(self, conv_res: Any, pages: list[str]) -> list[str]:
        if self.refuse in pages:
            raise ValueError(f"bad page {self.refuse}")
        self.calls.append((list(pages), threading.get_ident()))
        return [f"{page}@{len(self.calls)}" for page in pages]


@pytest.fixture
def model_thread() -> Any:
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sca-cuda")
    yield thread
    thread.shutdown()


def _each(model: Callable[[Any, list[str]], list[str]], docs: list[_Doc], pages: int = 1) -> Any:
    """Per document, its call of ``model`` with its own pages."""
    return {d.name: partial(model, d, [f"{d.name}:{n}" for n in range(1, pages + 1)]) for d in docs}


def _concurrently(calls: dict[str, Callable[[], list[str]]]) -> dict[str, Any]:
    """Run each call on its own thread (as docling's per-document stage threads do)."""
    results: dict[str, Any] = {}

    def run(name: str, call: Callable[[], list[str]]) -> None:
        try:
            results[name] = call()
        except Exception as exc:
            results[name] = exc

    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def _documents(coalescer: Coalescer, names: list[str], pages: int = 1) -> list[_Doc]:
    for name in names:
        coalescer.expect(name, {"layout": pages, "table": pages, "ocr": pages})
    return [_Doc(name) for name in names]


def test_one_page_from_each_of_four_documents_is_one_full_layout_call(model_thread: Any) -> None:
    log = BatchLog()
    coalescer = Coalescer(model_thread, log, gather_seconds=30)
    model = _Model()
    layout = SharedModel(model, "layout", batch_size=4, coalescer=coalescer)
    docs = _documents(coalescer, ["a.pdf", "b.pdf", "c.pdf", "d.pdf"])
    results = _concurrently(_each(layout, docs))
    # all four waited for each other (none was left to come), then went through in one call
    assert [sorted(pages) for pages, _thread in model.calls] == [
        ["a.pdf:1", "b.pdf:1", "c.pdf:1", "d.pdf:1"]
    ]
    assert {d.name: results[d.name] for d in docs} == {d.name: [f"{d.name}:1@1"] for d in docs}
    model_thread_id = model_thread.submit(threading.get_ident).result()
    assert {thread for _pages, thread in model.calls} == {model_thread_id}
    taken = log.take("a.pdf")
    assert taken == {"layout": ((1, 4),)}
    assert summary(taken)["layout"] == {
        "calls": 1,
        "pages": 1,
        "max_batch": 4,
        "mean_batch": 4.0,
        "share_of_calls": 0.25,
    }


def test_a_call_never_carries_more_pages_than_the_batch_size(model_thread: Any) -> None:
    coalescer = Coalescer(model_thread, BatchLog(), gather_seconds=30)
    model = _Model()
    layout = SharedModel(model, "layout", batch_size=4, coalescer=coalescer)
    docs = _documents(coalescer, [f"{n}.pdf" for n in range(6)], pages=2)
    results = _concurrently(_each(layout, docs, pages=2))
    assert sorted(len(pages) for pages, _thread in model.calls) == [4, 4, 4]
    for doc in docs:  # each caller has exactly its own pages back, in its order
        assert [page.split("@")[0] for page in results[doc.name]] == [
            f"{doc.name}:1",
            f"{doc.name}:2",
        ]


def test_a_lone_document_does_not_wait_for_company(model_thread: Any) -> None:
    coalescer = Coalescer(model_thread, BatchLog(), gather_seconds=3600)
    model = _Model()
    layout = SharedModel(model, "layout", batch_size=16, coalescer=coalescer)
    (doc,) = _documents(coalescer, ["only.pdf"], pages=40)
    # its later pages come only after this call returns, so nothing is worth waiting for
    assert layout(doc, ["p1", "p2"]) == ["p1@1", "p2@1"]


def test_a_document_that_never_sends_its_pages_delays_the_others_only_the_gather_time(
    model_thread: Any,
) -> None:
    coalescer = Coalescer(model_thread, BatchLog(), gather_seconds=0.05)
    model = _Model()
    layout = SharedModel(model, "layout", batch_size=16, coalescer=coalescer)
    here, _silent = _documents(coalescer, ["here.pdf", "silent.pdf"])
    assert layout(here, ["h1"]) == ["h1@1"]
    coalescer.forget("silent.pdf")


def test_one_documents_bad_page_fails_only_that_document(model_thread: Any) -> None:
    log = BatchLog()
    coalescer = Coalescer(model_thread, log, gather_seconds=30)
    model = _Model(refuse="bad.pdf:1")
    layout = SharedModel(model, "layout", batch_size=8, coalescer=coalescer)
    docs = _documents(coalescer, ["good.pdf", "bad.pdf", "fine.pdf"])
    results = _concurrently(_each(layout, docs))
    assert isinstance(results["bad.pdf"], ValueError)
    assert [page.split("@")[0] for page in results["good.pdf"]] == ["good.pdf:1"]
    assert [page.split("@")[0] for page in results["fine.pdf"]] == ["fine.pdf:1"]
    # the merged call raised; each document then ran alone, and only its own calls are logged
    assert log.take("good.pdf") == {"layout": ((1, 1),)}
    assert log.take("bad.pdf") == {}


def test_ocr_pages_of_several_documents_share_one_turn_each_with_its_own_result(
    model_thread: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OCR writes each page's score into its own document's result: the documents' pages go
    through the model in one turn of the model thread, each with its own result, and the
    batching counters show one call of all their pages."""
    seen: list[tuple[str, list[str], int]] = []
    turns: list[int] = []

    def ocr(conv_res: Any, pages: list[str]) -> list[str]:
        seen.append((conv_res.name, list(pages), threading.get_ident()))
        return [f"{page}+{conv_res.name}" for page in pages]

    def run_in_turn(*args: Any) -> None:
        turns.append(1)
        run(*args)

    log = BatchLog()
    coalescer = Coalescer(model_thread, log, gather_seconds=30)
    run = coalescer._run
    monkeypatch.setattr(coalescer, "_run", run_in_turn)
    shared = SharedModel(ocr, "ocr", batch_size=8, coalescer=coalescer)
    docs = _documents(coalescer, ["x.pdf", "y.pdf", "z.pdf"])
    results = _concurrently(_each(shared, docs))
    assert sorted((name, pages) for name, pages, _thread in seen) == [
        (d.name, [f"{d.name}:1"]) for d in docs
    ]
    assert results == {d.name: [f"{d.name}:1+{d.name}"] for d in docs}
    assert len(turns) == 1  # one turn of the model thread for all three
    model_thread_id = model_thread.submit(threading.get_ident).result()
    assert {thread for _name, _pages, thread in seen} == {model_thread_id}
    assert {d.name: log.take(d.name) for d in docs} == {d.name: {"ocr": ((1, 3),)} for d in docs}


def test_one_documents_ocr_fault_in_a_shared_turn_stays_its_own(model_thread: Any) -> None:
    log = BatchLog()
    coalescer = Coalescer(model_thread, log, gather_seconds=30)
    model = _Model(refuse="bad.pdf:1")
    shared = SharedModel(model, "ocr", batch_size=8, coalescer=coalescer)
    docs = _documents(coalescer, ["good.pdf", "bad.pdf"])
    results = _concurrently(_each(shared, docs))
    assert isinstance(results["bad.pdf"], ValueError)
    assert [page.split("@")[0] for page in results["good.pdf"]] == ["good.pdf:1"]
    assert len(model.calls) == 1  # the good page was read once, not again after the fault
    assert log.take("good.pdf") == {"ocr": ((1, 2),)} and log.take("bad.pdf") == {}


def test_pages_passed_by_are_not_waited_for(model_thread: Any) -> None:
    """With ``ocr_mode = auto`` most pages never reach OCR: a document whose pages all passed
    by is not waited for, so another's scan runs at once, not after the gather time."""
    coalescer = Coalescer(model_thread, BatchLog(), gather_seconds=3600)
    model = _Model()
    ocr = SharedModel(model, "ocr", batch_size=8, coalescer=coalescer, select=lambda p: "scan" in p)
    text, scan = _documents(coalescer, ["text.pdf", "scan.pdf"])
    assert ocr(text, ["text-1"]) == ["text-1"]
    read: dict[str, list[str]] = {}
    waiting = threading.Thread(target=lambda: read.update(pages=ocr(scan, ["scan-1"])))
    waiting.start()  # on a thread of its own, so that a wait fails the test, not hangs it
    waiting.join(timeout=10)  # otherwise an hour, waiting for text.pdf's page
    assert read.get("pages") == ["scan-1@1"]
    coalescer.forget("text.pdf")
    waiting.join(timeout=10)


def test_a_switched_off_stage_passes_its_pages_on_without_the_model_thread(
    model_thread: Any,
) -> None:
    class Off:
        enabled = False

        def __call__(self, conv_res: Any, pages: list[str]) -> list[str]:
            return [*pages]

    coalescer = Coalescer(model_thread, BatchLog())
    table = SharedModel(Off(), "table", batch_size=4, coalescer=coalescer)
    assert table(_Doc("a.pdf"), ["p"]) == ["p"]
    assert coalescer._scheduler is None  # nothing was queued


def test_pages_a_stage_is_not_for_pass_it_by_in_their_place(model_thread: Any) -> None:
    coalescer = Coalescer(model_thread, BatchLog(), gather_seconds=30)
    model = _Model()
    ocr = SharedModel(model, "ocr", batch_size=8, coalescer=coalescer, select=lambda p: "scan" in p)
    (doc,) = _documents(coalescer, ["mixed.pdf"], pages=3)
    assert ocr(doc, ["text-1", "scan-2", "text-3"]) == ["text-1", "scan-2@1", "text-3"]
    assert [pages for pages, _thread in model.calls] == [["scan-2"]]
    assert ocr(doc, ["text-4"]) == ["text-4"] and len(model.calls) == 1  # nothing to read
