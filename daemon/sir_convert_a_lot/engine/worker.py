"""The worker: owns the GPU context, loads models once, runs every model call on one thread.

It speaks ``protocol`` over a ``Channel`` (anything with ``send`` and ``recv``) and knows nothing
of what carries the messages: the local transport runs it in a spawned child over a pipe
(``transports.local``); a Ray actor can run the same ``serve`` over queues. Whatever hosts it
should isolate it, so that a converter that hangs in native code, exhausts memory or crashes the
interpreter on a hostile file takes only the worker down. Every model load, warm-up inference and
job inference runs on the single ``sca-cuda`` thread (the backends submit their model calls
there), so all GPU calls of all jobs happen on one CUDA thread. The thread that calls ``serve``
reads requests and starts a thread per document, which answers it when done: several documents
convert at once, and their model calls meet on the one thread, where docling's are merged into
full batches (``backends.coalesce``). How many are in flight is the supervisor's to bound.

A file is opened by the format its name says (``backends.document_open``). PDFs and images go to
the backend the job asks for; a format that runs no model (office files, markup, e-mail) always
goes to the model-free backend (``backends.model_free``), which loads nothing and runs on the
document's own thread: such a job never waits for a model to load and needs no GPU, so a worker
that loaded no backend at all (no usable GPU under the lock) still converts it.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, TypeVar

from sir_convert_a_lot import logs
from sir_convert_a_lot.backends import Backend, BackendContext, create_backend
from sir_convert_a_lot.backends.document_open import Opened, OpenedDocument, open_document
from sir_convert_a_lot.backends.file_faults import broken_file
from sir_convert_a_lot.backends.model_free import ModelFreeBackend
from sir_convert_a_lot.backends.normalize import normalize
from sir_convert_a_lot.backends.pdf_open import MUPDF, OpenedPdf, open_pdf, read_source
from sir_convert_a_lot.engine.gpu import (
    DeviceBusy,
    DeviceLock,
    GpuProbe,
    LockFolderUnavailable,
    describe_holder,
    probe,
)
from sir_convert_a_lot.engine.protocol import (
    Converted,
    ConvertRequest,
    Failed,
    Load,
    Probed,
    Progress,
    Ready,
    Shutdown,
    StartupFailed,
    WorkerSettings,
)
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.options import ConversionOptions
from sir_convert_a_lot.versions import component_versions

T = TypeVar("T")

TRIM_EVERY_SECONDS = 10.0
"""The least time between two hand-backs of freed heap to the system (glibc's ``malloc_trim``),
each after a document: docs/reference/memory.md measured a warm CPU worker keeping about 350 MB
of its 1.75 GB as freed memory in glibc's arenas, and 33 ms a call, so a call at most this often
costs under half a percent of one core."""


class Channel(Protocol):
    """The worker's end of a transport. ``recv`` raises EOFError when the supervisor is gone."""

    def send(self, obj: object) -> None: ...

    def recv(self) -> object: ...


def serve(channel: Channel, settings: WorkerSettings) -> None:
    """Run the worker's side of the handshake, then answer requests until told to stop."""
    _Worker(channel, settings).serve()


WorkerEntry = Callable[[Channel, WorkerSettings], None]
"""What a worker process or actor runs once its transport is up: ``serve`` above, always, in
production. It is a parameter of the transports (``LocalProcessTransport``, ``WorkerActor`` and
``RayActorTransport``, ``EnginePool``) for one reason: it is the engine's only seam for the tests,
which supply an entry point of their own (``tests/plugins/scripted_worker.py``) that wraps this
worker and crashes, hangs or outgrows its memory on a scripted file, where a hostile PDF would.
It must be picklable (it crosses into a spawned process or a Ray actor). No config key and no
environment variable reaches it: nothing a user sets can load test code into a worker."""


class _Worker:
    def __init__(self, conn: Channel, settings: WorkerSettings) -> None:
        self.conn = conn
        self.settings = settings
        self._send_lock = threading.Lock()
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sca-cuda")
        self.backends: dict[tuple[str, str], Backend] = {}
        self.model_free = ModelFreeBackend()  # the formats that run no model, on any host
        self._backends_lock = threading.Lock()
        self.option_sets: tuple[ConversionOptions, ...] = ()
        self.device: dict[str, object] | None = None  # the GPU the probe saw
        self.device_lock: DeviceLock | None = None  # held for life when the worker locks
        self._trimmed = time.monotonic()
        self._trim_lock = threading.Lock()

    def send(self, message: object) -> None:
        with self._send_lock:
            self.conn.send(message)

    def on_model_thread(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the one model (CUDA) thread and wait for it."""
        return self.model_thread.submit(work).result()

    def thread_id(self) -> int:
        return self.on_model_thread(threading.get_ident)

    def serve(self) -> None:
        seen = self._probe()
        self.device = seen.device.to_dict() if seen.device else None
        self.send(
            Probed(
                pid=os.getpid(),
                probe=seen.to_dict(),
                versions=component_versions(),
                host=socket.gethostname(),
            )
        )
        load = self.conn.recv()
        if isinstance(load, Shutdown):
            return
        assert isinstance(load, Load)
        self.option_sets = load.option_sets
        try:
            self._lock_device(load.plan)
            load_seconds, warm_seconds = self._load(load.plan)
        except JobFailure as failure:
            reason = str(failure.details.get("reason", failure.code.value))
            self.send(StartupFailed(reason, failure.message, failure.details))
            return
        self.send(
            Ready(
                pid=os.getpid(),
                thread_id=self.thread_id(),
                loaded=tuple(self.backends),
                load_seconds=load_seconds,
                warm_seconds=warm_seconds,
            )
        )
        while True:
            try:
                message = self.conn.recv()
            except EOFError:
                return
            if isinstance(message, Shutdown):
                return
            if isinstance(message, ConvertRequest):
                threading.Thread(
                    target=self._answer, args=(message,), name="sca-document", daemon=True
                ).start()

    def _answer(self, request: ConvertRequest) -> None:
        self.send(self._convert(request))
        now = time.monotonic()
        with self._trim_lock:
            due = now - self._trimmed >= TRIM_EVERY_SECONDS
            if due:
                self._trimmed = now
        if due:  # after the answer, so that it never waits for this
            release_freed_memory()

    def _probe(self) -> GpuProbe:
        index = self.settings.device_index
        host_gpu = self.settings.host_gpu
        return probe(host_gpu if host_gpu >= 0 else index, torch_index=index)

    def _lock_device(self, plan: tuple[tuple[str, str], ...]) -> None:
        """A worker the daemon cannot lock for (a Ray actor on another host) takes its host's
        GPU lock itself, before anything is loaded onto the GPU, and holds it for its life."""
        instance = self.settings.lock_instance
        if not instance or not any(device == "cuda" for _, device in plan):
            return
        index = self.settings.host_gpu if self.settings.host_gpu >= 0 else 0
        folder = self.settings.lock_folder
        lock = DeviceLock(index, instance, Path(folder) if folder else None)
        try:
            lock.acquire(wait=False)
        except DeviceBusy as busy:
            raise JobFailure(
                ErrorCode.GPU_NOT_AVAILABLE,
                f"GPU {index} on {socket.gethostname()} is held by {describe_holder(busy.holder)}",
                reason="device_busy",
            ) from None
        except LockFolderUnavailable as problem:
            raise JobFailure(
                ErrorCode.GPU_NOT_AVAILABLE, str(problem), reason="device_lock_unavailable"
            ) from None
        self.device_lock = lock

    def _load(self, plan: tuple[tuple[str, str], ...]) -> tuple[float, float]:
        started = time.monotonic()
        for name, device in plan:
            self._backend(name, device)
        loaded = time.monotonic()
        if self.backends:
            sample = _sample_pdf()
            for (_name, _device), backend in self.backends.items():
                backend.warm(sample, _WARM_OPTIONS)
        return loaded - started, time.monotonic() - loaded

    def _backend(self, name: str, device: str) -> Backend:
        with self._backends_lock:
            return self._loaded_backend(name, device)

    def _loaded_backend(self, name: str, device: str) -> Backend:
        key = (name, device)
        if key not in self.backends:
            backend = create_backend(name, self._context(device))
            wanted = tuple(o for o in self.option_sets if o.backend == name)
            backend.load(wanted)
            self.backends[key] = backend
        return self.backends[key]

    def _context(self, device: str) -> BackendContext:
        """What a backend on ``device`` is given: the one model thread and the settings."""
        return BackendContext(
            device="cuda" if device == "cuda" else "cpu",
            device_index=self.settings.device_index,
            model_thread=self.model_thread,
            models_path=self.settings.models_path,
            batch_sizes=self.settings.batch_sizes,
            ocr_backend=self.settings.ocr_backend,
            table_check_every=self.settings.table_check_every,
        )

    def _backend_for(self, opened: Opened, request: ConvertRequest) -> Backend:
        """The model-free backend for a format that runs no model; else the job's own, on the
        device it was decided for. A job decided to run no model (``"none"``) whose file runs
        models never gets a device here: the supervisor and this worker disagree on its format."""
        if isinstance(opened, OpenedDocument) and not opened.models:
            return self.model_free
        if request.device not in ("cuda", "cpu"):
            raise JobFailure(
                ErrorCode.GPU_NOT_AVAILABLE,
                "The job was decided to run no model, but its file runs models; it can be "
                "retried, and the operator finds the details in the log.",
                reason="no_device_decided",
                decided=request.device,
                format=opened.format.name if isinstance(opened, OpenedDocument) else "pdf",
            )
        return self._backend(request.options.backend, request.device)

    def _open(self, request: ConvertRequest) -> Opened:
        """The request's file, read through the regular-file open and opened by its format."""
        data = read_source(Path(request.source_path), self.settings.max_file_bytes)
        name = Path(request.source_name).name
        opened = open_document(data, name, self.settings.max_pages, self.settings.max_file_bytes)
        if isinstance(opened, OpenedPdf):
            with MUPDF:
                opened.document.close()
        return opened

    def _convert(self, request: ConvertRequest) -> Converted | Failed:
        timings: dict[str, float] = {}
        pages: int | None = None
        started = time.monotonic()
        try:
            opened = self._open(request)
            pages = opened.pages
            self.send(Progress(request.job_id, 0, pages))  # its size, for the claim pacing
            timings["preflight_ms"] = _ms_since(started)
            backend = self._backend_for(opened, request)
            convert_started = time.monotonic()

            def progress(page: int, total: int) -> None:
                self.send(Progress(request.job_id, page, total))

            result = backend.convert(opened, request.options, progress)
            pages = result.page_count or pages
            timings["convert_ms"] = _ms_since(convert_started)
            normalize_started = time.monotonic()
            normalized = normalize(
                result.markdown, request.options.normalize, result.pages, result.furniture
            )
            timings["normalize_ms"] = _ms_since(normalize_started)
        except JobFailure as failure:
            return Failed(
                request.job_id, failure.code.value, failure.message, failure.details, pages, timings
            )
        except Exception as exc:  # noqa: BLE001 - a converter bug fails the job, not the worker
            known = broken_file(exc, "parse_failed") or _internal_error(exc)
            return Failed(
                request.job_id, known.code.value, known.message, known.details, pages, timings
            )
        return Converted(
            job_id=request.job_id,
            markdown=normalized.markdown,
            pages=pages,
            backend_used=result.backend_used,
            acceleration_used=result.acceleration_used,
            ocr_enabled=result.ocr_enabled,
            warnings=opened.warnings + result.warnings + normalized.warnings,
            timings_ms=timings,
            thread_id=result.model_thread_id or threading.get_ident(),
            peak_gpu_memory_bytes=result.peak_gpu_memory_bytes,
            stage_devices=dict(result.stage_devices),
            batches=dict(result.batches),
            tables=result.tables,
            host=socket.gethostname(),
            device=self.device,
            pictures=result.pictures,
            link_prefix=result.link_prefix,
            docling_json=result.docling_json,
            gpu_memory=gpu_memory(self.settings.device_index),
        )


def gpu_memory(index: int) -> tuple[int, int] | None:
    """torch.cuda's allocated and reserved bytes on ``index`` now, where this process has already
    initialised CUDA (never the first to). Both are the caching allocator's own bookkeeping on
    the host, read without a call onto the GPU, so any thread may ask."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.memory_allocated(index)), int(torch.cuda.memory_reserved(index))


def release_freed_memory() -> None:
    """Hand the heap that glibc keeps after frees back to the system (not on other C libraries)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def _internal_error(exc: Exception) -> JobFailure:
    """Anything not known to be the file's fault: a converter bug or an environment fault,
    which a later try may not meet."""
    return JobFailure(
        ErrorCode.CONVERSION_INTERNAL_ERROR,
        "The converter failed unexpectedly on this file; it can be retried, and the operator "
        "can find the details in the log.",
        exception=type(exc).__name__,
        error=str(exc)[:500],
    )


_WARM_OPTIONS = ConversionOptions(ocr_mode="off", normalize="none")


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _sample_pdf() -> OpenedPdf:
    """A one-page PDF with a heading, prose and a small ruled table, built in memory."""
    import pymupdf

    document = pymupdf.open()
    page = document.new_page(width=595, height=842)
    page.insert_text((72, 80), "Warm-up page", fontsize=18)
    page.insert_text((72, 120), "A short paragraph so the models see ordinary text.", fontsize=11)
    for row in range(3):
        for col in range(3):
            rect = pymupdf.Rect(72 + col * 120, 160 + row * 24, 192 + col * 120, 184 + row * 24)
            page.draw_rect(rect, color=(0, 0, 0), width=0.5)
            page.insert_text((rect.x0 + 4, rect.y1 - 8), f"r{row}c{col}", fontsize=10)
    data = document.tobytes()
    document.close()
    return open_pdf(data, max_pages=1)


# Model libraries draw progress bars and chat on stderr, which is the journal here.
_QUIET_ENVIRONMENT = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def quiet_libraries(settings: WorkerSettings) -> None:
    """Structured log lines only; libraries' own warnings only when they are errors (their
    per-table and per-page warnings would drown the daemon's events)."""
    for name, value in _QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    # What libraries print goes nowhere, once for the whole process: swapping stdout per
    # conversion is not safe with several conversions at once.
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the worker
    logs.configure(settings.log_level, settings.log_format, library_level=logging.ERROR)
