"""The daemon with several jobs in its worker at once, over a worker in memory that reports each
document's pages at once and answers only when the test lets it: every job converting shows in
status, the lease and STATUS=, and pacing holds the pages in flight to the limit."""

from __future__ import annotations

import threading
from pathlib import Path

from sir_convert_a_lot.config import Config
from sir_convert_a_lot.engine.protocol import ConvertRequest, Progress, WorkerSettings
from sir_convert_a_lot.engine.supervisor import Engine
from sir_convert_a_lot.engine.transports.base import Transport
from sir_convert_a_lot.ops.status import gather_status, render_status
from sir_convert_a_lot.service.daemon import Service
from tests.engine.test_supervisor import ScriptedTransport
from tests.helpers import load_config, make_pdf, wait_for
from tests.service.test_runners import _converted

PAGES = 2


class HoldingWorker(ScriptedTransport):
    """Says how many pages a document has as soon as it gets it (as the worker does once it has
    opened the file) and converts it only when ``release`` is called."""

    def send(self, message: object) -> None:
        super().send(message)
        if isinstance(message, ConvertRequest):
            self.inbox.append(Progress(message.job_id, 0, PAGES))

    answered = 0

    def release(self) -> None:
        """Answer every request not answered yet."""
        requests = [m for m in list(self.sent) if isinstance(m, ConvertRequest)]
        for message in requests[self.answered :]:
            self.inbox.append(_converted(message.job_id, PAGES))
        self.answered = len(requests)


def test_status_shows_every_job_converting_and_pacing_holds_the_pages(tmp_path: Path) -> None:
    config = load_config(tmp_path, gpu={"max_pages_in_flight": 4 * PAGES})
    service = Service(config)
    workers: list[HoldingWorker] = []

    def factory(settings: WorkerSettings) -> Transport:
        workers.append(HoldingWorker(settings))
        return workers[-1]

    assert isinstance(service.engine, Engine)  # the supervised worker, over the test's transport
    service.engine.transport_factory = factory
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    names = [f"doc-{i}.pdf" for i in range(6)]
    try:
        assert service.ready.wait(30)
        for name in names:
            make_pdf(tmp_path / "inbox" / name, pages=PAGES)
        # 4 jobs of 2 pages fill the 8 pages in flight; the other 2 files wait in the inbox.
        wait_for(lambda: len(service.converting()) == 4, timeout=30)
        assert wait_for(lambda: all(a.pages == PAGES for a in service.converting()), 10)
        assert service.in_flight == 4
        assert len(list((tmp_path / "inbox").iterdir())) == 2
        status = service.heartbeat.status()
        assert [job["pages"] for job in status["jobs"]] == [PAGES] * 4
        assert all(job["seconds"] >= 0 and job["started_at"] > 0 for job in status["jobs"])
        assert status["job_id"] == status["jobs"][0]["job_id"]  # the first, as before
        assert status["activity"] == "converting"
        line = service.heartbeat.status_line()
        assert line.startswith("converting doc-") and line.count(f"(page 0/{PAGES})") == 3
        assert " and 1 more" in line
        shown = wait_for(lambda: _shown_converting(config), timeout=10)
        assert shown.count("    converting: doc-") == 4
        # Let them finish: every file ends once, with nothing left over.
        wait_for(lambda: _released_until_done(workers[-1], tmp_path, names), timeout=30)
    finally:
        service.request_stop()
        thread.join(30)
    assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == names
    assert service.engine.starts == 1


def _shown_converting(config: Config) -> str | None:
    text = render_status(gather_status(config))
    return text if "converting 4 files" in text else None


def _released_until_done(worker: HoldingWorker, root: Path, names: list[str]) -> bool:
    worker.release()
    return all((root / "outbox" / name.replace(".pdf", ".json")).exists() for name in names)
