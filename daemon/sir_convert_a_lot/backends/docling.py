"""The GPU engine: docling's standard PDF pipeline, with every model call on one thread.

It reads PDFs and images through that one pipeline (an image's frames are its pages), and the
formats that run no model through docling's own readers (``backends.model_free``): each variant's
converter has options for every format of ``formats`` (``backends.docling_formats``).

docling's pipeline runs its stages (parsing, layout, OCR, tables, assembly) on threads of its own,
per document. Its three model stages (layout, TableFormer, OCR) are wrapped in
``coalesce.SharedModel``: their calls, from every document in flight, queue for the worker's one
``sca-cuda`` thread, which also loaded the models, and calls of the same model are merged into
full batches. So all GPU work of all jobs happens on one CUDA thread, as the contract requires,
while parsing, post-processing and assembly run on the documents' own threads, beside it.

Options map as follows:

- ``table_mode``: TableFormer ``fast``, or ``accurate`` with cell matching (table cells matched
  to the PDF's own text cells).
- ``ocr_mode``: ``off`` (no OCR), ``force`` (full-page OCR on every page), ``auto`` (one pass;
  full-page OCR on the pages that need it, decided page by page by ``backends.ocr_pages``:
  scans, never born-digital pages; warning ``docling_auto_ocr_pages:<k>/<n>``). An image's page
  has no text but by OCR: under ``auto`` every one is a scan (no text cells, one bitmap over the
  whole page), so each is read; under ``off`` an image converts as under ``force``, so that it
  still gives its text. OCR is RapidOCR,
  by default (``gpu.ocr_backend = "auto"``) with its torch engine on the GPU and its ONNX engine
  on the CPU (``backends.models.ocr_engine``); its models are built while the worker loads.
- TableFormer runs with ``backends.tableformer_fast``'s prediction: the same tags and boxes as
  docling's own, without recomputing the image's projections at every tag; the tables of one
  merged call are predicted together (``backends.table_batch``). Only on the docling-ibm-models
  it was verified against, and checked against docling's own while it runs
  (``backends.table_fast_path``, ``gpu.table_check_every``); each job's tables are counted
  (``backends.table_tally``).
- batch sizes: ``gpu.layout_batch_size``, ``gpu.ocr_batch_size``, ``gpu.table_batch_size``.
- ``output.images`` other than ``placeholder``: docling crops each picture
  (``generate_picture_images``, a pipeline of its own); the outputs are made by
  ``backends.docling_export``, which also writes the lossless JSON of ``output.formats``.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sir_convert_a_lot.backends import models, ocr_engine
from sir_convert_a_lot.backends.base import (
    BackendContext,
    BackendResult,
    ProgressCallback,
)
from sir_convert_a_lot.backends.batching import BatchLog
from sir_convert_a_lot.backends.coalesce import Coalescer, SharedModel
from sir_convert_a_lot.backends.docling_export import export_document
from sir_convert_a_lot.backends.docling_formats import allowed, converter_options
from sir_convert_a_lot.backends.docling_pipeline import (
    initialize_pipeline,
    pipeline_class,
    pipeline_options,
    tensor_devices,
)
from sir_convert_a_lot.backends.docling_run import (
    convert_stream,
    errors_of,
    input_rejected,
    name_after_file,
    read_as_other,
)
from sir_convert_a_lot.backends.document_open import Opened, OpenedDocument
from sir_convert_a_lot.backends.file_faults import broken_message
from sir_convert_a_lot.backends.model_free import convert_model_free
from sir_convert_a_lot.backends.ocr_pages import needs_ocr
from sir_convert_a_lot.backends.pdf_open import OpenedPdf, no_page_has_an_area, resource_cycle
from sir_convert_a_lot.backends.table_tally import CountedTables, TableTally
from sir_convert_a_lot.capabilities import Capabilities, Device, capabilities_of
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.options import ConversionOptions

if TYPE_CHECKING:
    from sir_convert_a_lot.backends.table_fast_path import FastPath

Variant = tuple[str, str, bool]
"""What a converter is built for: (table_mode, ocr_mode, pictures kept as images)."""


def _variant(options: ConversionOptions, document: Opened | None = None) -> Variant:
    """The variant a document converts with: an image is read by OCR even under ``off``."""
    ocr_mode = options.ocr_mode
    if ocr_mode == "off" and isinstance(document, OpenedDocument) and document.models:
        ocr_mode = "force"
    return (options.table_mode, ocr_mode, options.images != "placeholder")


class DoclingBackend:
    name = "docling"
    capabilities: ClassVar[Capabilities] = capabilities_of("docling")

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self._converters: dict[Variant, Any] = {}
        self._stages: dict[Variant, dict[str, Device]] = {}
        self._pipeline_cls: type | None = None
        self._batches = BatchLog()
        self._coalescer = Coalescer(context.model_thread, self._batches)
        self._tables = TableTally()
        self._fast_path: FastPath | None = None  # made with the first converter (torch)
        self._loading = threading.Lock()
        self._names = itertools.count(1)
        self._active = 0  # documents converting now (the GPU's peak memory is shared by them)
        self._active_lock = threading.Lock()

    # -- loading ------------------------------------------------------------------------------

    def load(self, option_sets: tuple[ConversionOptions, ...]) -> None:
        self._check_models(option_sets)
        for options in option_sets or (ConversionOptions(),):
            self._converter(_variant(options))

    def _check_models(self, option_sets: tuple[ConversionOptions, ...]) -> None:
        if not self.context.models_path:
            return  # docling resolves them from the Hugging Face cache (or fetches them)
        engine = models.ocr_engine(self.context.ocr_backend, self.context.device)
        absent = models.missing(Path(self.context.models_path), option_sets, {engine})
        if absent:
            where = Path(self.context.models_path)
            names = ", ".join(f"{m.name} ({models.describe_absent(m, where)})" for m in absent)
            raise JobFailure(
                ErrorCode.CONVERSION_INTERNAL_ERROR,
                f"Model files are missing under gpu.models_path {self.context.models_path}: "
                f"{names}. Fetch them with: sir-convert models download",
                reason="models_missing",
                missing=[models.describe_absent(m, where) for m in absent],
                models_path=self.context.models_path,
                fix="sir-convert models download",
            )

    def _converter(self, key: Variant) -> Any:
        with self._loading:
            return self._load_converter(key)

    def _load_converter(self, key: Variant) -> Any:
        # torch only in the worker: the daemon asks this class for its capabilities
        from sir_convert_a_lot.backends import layout_slabs
        from sir_convert_a_lot.backends.table_batch import BatchedTables
        from sir_convert_a_lot.backends.table_fast_path import FastPath, accelerate

        ocr_mode = key[1]
        if key not in self._converters:
            converter = self._build_converter(key)
            try:
                pipeline = self.context.model_thread.submit(_initialize, converter).result()
            except Exception as exc:  # noqa: BLE001 - docling raises many kinds while loading
                raise JobFailure(
                    ErrorCode.CONVERSION_INTERNAL_ERROR,
                    "docling could not load its models: "
                    f"{type(exc).__name__}: {str(exc)[:300]}. On a host without access to the "
                    "Hugging Face hub, set gpu.models_path and run: sir-convert models download",
                    reason="models_unloadable",
                    exception=type(exc).__name__,
                ) from None
            self._converters[key] = converter
            self._stages[key] = self._stage_devices(pipeline)
            if self._fast_path is None:
                self._fast_path = FastPath(self.context.table_check_every)
            table_model = getattr(pipeline, "table_model", None)
            accelerate(getattr(table_model, "tf_predictor", None), self._fast_path)
            layout = getattr(pipeline, "layout_model", None)  # a page's layout alone, any company
            layout_size = self.context.batch_sizes.get("layout", 4)
            self.context.model_thread.submit(layout_slabs.install, layout, layout_size).result()
            for stage in ("layout", "table", "ocr"):
                model = getattr(pipeline, f"{stage}_model")
                size = self.context.batch_sizes.get(stage, 4)
                select = needs_ocr if stage == "ocr" and ocr_mode == "auto" else None
                if stage == "table":
                    model = BatchedTables(model, self._tables)
                shared: Any = SharedModel(model, stage, size, self._coalescer, select)
                if stage == "table":
                    shared = CountedTables(shared, self._tables)
                setattr(pipeline, f"{stage}_model", shared)
        return self._converters[key]

    def _build_converter(self, key: Variant) -> Any:
        from docling.document_converter import DocumentConverter

        if self._pipeline_cls is None:
            self._pipeline_cls = pipeline_class()
        options = pipeline_options(self.context, *key)
        return DocumentConverter(
            allowed_formats=allowed(),
            format_options=converter_options(self._pipeline_cls, options),
        )

    def _stage_devices(self, pipeline: Any) -> dict[str, Device]:
        """Where each model stage really runs, read off the loaded pipeline: the devices of its
        torch weights; for OCR, of the engine RapidOCR built (``backends.ocr_engine``)."""
        stages: dict[str, Device] = {}
        for stage in ("layout", "table", "ocr"):
            model = getattr(pipeline, f"{stage}_model", None)
            found = ocr_engine.devices(model) if stage == "ocr" else tensor_devices(model)
            stages[stage] = "cuda" if "cuda" in found else "cpu"
        return stages

    def _stages_that_ran(self, key: Variant, document: Any, ocr_pages: int) -> dict[str, Device]:
        """This job's stages: layout on every page, TableFormer only when layout found a
        table (each table in the document went through it), OCR when it read any page."""
        loaded = self._stages.get(key, {})
        ran = {"layout": loaded.get("layout", "cpu")}
        if getattr(document, "tables", None):
            ran["table"] = loaded.get("table", "cpu")
        if ocr_pages:
            ran["ocr"] = loaded.get("ocr", "cpu")
        return ran

    def warm(self, sample: OpenedPdf, options: ConversionOptions) -> None:
        for key in list(self._converters):
            name = self._new_name()
            self._run(self._converters[key], sample, name, lambda _p, _t: None)
            self._batches.take(name)
            self._tables.take(name)

    # -- converting ---------------------------------------------------------------------------

    def convert(
        self, document: Opened, options: ConversionOptions, progress: ProgressCallback
    ) -> BackendResult:
        if isinstance(document, OpenedPdf):
            _refuse_resource_cycles(document)
            _refuse_sizeless_pages(document)
        elif not document.models:  # read by docling's model-free readers, no model runs
            converter = self._converter(_variant(options))
            name = self._new_name(document.suffix)
            return convert_model_free(converter, document, options, progress, name)
        return self._convert_pages(document, options, progress)

    def _convert_pages(
        self,
        pdf: OpenedPdf | OpenedDocument,
        options: ConversionOptions,
        progress: ProgressCallback,
    ) -> BackendResult:
        """A PDF's or an image's pages through the pipeline and its shared models."""
        name = self._new_name(pdf.suffix if isinstance(pdf, OpenedDocument) else ".pdf")
        self._begin()
        try:
            key = _variant(options, pdf)
            warnings: list[str] = []
            self._coalescer.expect(name, _stage_pages(pdf.pages, ocr=key[1] != "off"))
            document = self._run(self._converter(key), pdf, name, progress, warnings)
            name_after_file(document, pdf.name)
            exported = export_document(document, options.images, options.formats)
            warnings.extend(exported.warnings)
            calls = self._batches.take(name)
            tables = self._tables.take(name)
            ocr_pages = sum(own for own, _all in calls.get("ocr", ()))
            if key[1] == "auto" and ocr_pages:
                warnings.append(f"docling_auto_ocr_pages:{ocr_pages}/{pdf.pages}")
            stages = self._stages_that_ran(key, document, ocr_pages)
            batches = {stage: sizes for stage, sizes in calls.items() if stage in stages}
            peak = self._peak_memory()
        finally:
            self._end(name)
        return BackendResult(
            markdown=exported.markdown,
            pictures=exported.pictures,
            link_prefix=exported.link_prefix,
            docling_json=exported.docling_json,
            backend_used=self.name,
            # "cuda" means the layout model ran on the GPU (contract section 6).
            acceleration_used=stages.get("layout", "cpu"),
            stage_devices=stages,
            batches=batches,
            tables=tables,
            ocr_enabled=bool(ocr_pages),
            warnings=tuple(warnings),
            peak_gpu_memory_bytes=peak,
            model_thread_id=self._model_thread_id(),
        )

    def _new_name(self, suffix: str = ".pdf") -> str:
        """A stream name unique among the documents in flight: it tells their model calls apart.
        It ends in the file's own suffix, which docling reads the format from."""
        return f"document-{next(self._names)}{suffix}"

    def _begin(self) -> None:
        with self._active_lock:
            self._active += 1
            first = self._active == 1
        if first:
            self._reset_peak_memory()

    def _end(self, name: str) -> None:
        self._coalescer.forget(name)
        self._batches.take(name)
        self._tables.take(name)
        with self._active_lock:
            self._active -= 1

    def _run(
        self,
        converter: Any,
        pdf: OpenedPdf | OpenedDocument,
        name: str,
        progress: ProgressCallback,
        warnings: list[str] | None = None,
    ) -> Any:
        from docling.datamodel.base_models import ConversionStatus

        result = convert_stream(converter, pdf.data, name, progress)
        if isinstance(pdf, OpenedDocument) and (other := read_as_other(result, pdf.format)):
            raise other
        items, errors = errors_of(result)
        if result.status == ConversionStatus.SUCCESS:
            return result.document
        if result.status == ConversionStatus.PARTIAL_SUCCESS and result.document is not None:
            if warnings is not None:
                warnings.append(f"docling_partial_success:{len(errors)}")
            return result.document
        if input_rejected(items):
            raise _unparsable(errors, pdf)
        raise self._failure(errors)

    def _failure(self, errors: list[str]) -> JobFailure:
        text = " | ".join(errors)[:1000]
        out_of_memory = "out of memory" in text.lower()
        cuda_error = "cuda" in text.lower() and not out_of_memory
        if out_of_memory:
            self._empty_cache()
        return JobFailure(
            ErrorCode.CONVERSION_INTERNAL_ERROR,
            "The GPU ran out of memory on this file; it can be retried when the GPU is less busy."
            if out_of_memory
            else "docling could not convert this file; it can be retried, and the operator "
            "finds the details in the log.",
            reason="gpu_out_of_memory" if out_of_memory else "docling_failed",
            errors=errors[:10],
            # A CUDA error can leave the context unusable: the supervisor restarts the worker.
            restart_worker=cuda_error,
        )

    # -- GPU bookkeeping (on the model thread, like every CUDA call) ---------------------------

    def _on_gpu(self) -> bool:
        return self.context.device == "cuda"

    def _reset_peak_memory(self) -> None:
        if self._on_gpu():
            self.context.model_thread.submit(_reset_peak, self.context.device_index).result()

    def _peak_memory(self) -> int | None:
        if not self._on_gpu():
            return None
        peak: int = self.context.model_thread.submit(_peak, self.context.device_index).result()
        return peak

    def _empty_cache(self) -> None:
        if self._on_gpu():
            self.context.model_thread.submit(_empty_cache).result()

    def _model_thread_id(self) -> int:
        thread_id: int = self.context.model_thread.submit(threading.get_ident).result()
        return thread_id


def _initialize(converter: Any) -> Any:
    """docling's pipeline, with RapidOCR's engine built now rather than on the first scan."""
    pipeline = initialize_pipeline(converter)
    ocr_engine.load(getattr(pipeline, "ocr_model", None))
    return pipeline


def _refuse_resource_cycles(pdf: OpenedPdf) -> None:
    """docling-parse follows a form XObject or pattern that draws itself until the worker
    crashes or outgrows its memory limit (pdf.js issue19800.pdf: a crash on each of 3 attempts;
    operator_list_cycle.pdf: 16 GiB in 68 s). Such a file is malformed and fails the same way
    every time, so it is refused up front; the pymupdf backend, which cuts the loop, still
    converts it."""
    cycle = resource_cycle(pdf.data)
    if cycle is not None:
        raise JobFailure(
            ErrorCode.PDF_UNREADABLE,
            "The PDF contains a drawing that refers back to itself in a loop, which this "
            "converter cannot follow; export the PDF again from the program that made it.",
            reason="resource_cycle",
            xref=cycle,
        )


def _refuse_sizeless_pages(pdf: OpenedPdf) -> None:
    """When no page has a visible area, docling-parse draws nothing and docling fails the
    whole conversion, the same way on every try: the file's page boxes are broken."""
    if no_page_has_an_area(pdf.data):
        raise JobFailure(
            ErrorCode.PDF_UNREADABLE,
            "No page of the PDF has a usable size (its page boxes are empty), so this converter "
            "cannot draw any of them; export the PDF again from the program that made it.",
            reason="no_page_area",
        )


_name_after_file = name_after_file  # the name tests/backends/test_docling_export.py knows


def _unparsable(errors: list[str], document: OpenedPdf | OpenedDocument) -> JobFailure:
    if isinstance(document, OpenedDocument):  # an image Pillow opened but docling cannot
        return JobFailure(
            ErrorCode.DOCUMENT_UNREADABLE,
            "The image is damaged and cannot be read; save or scan it again.",
            reason="parse_failed",
            parser="docling",
            parser_message=" | ".join(errors)[:300],
        )
    return JobFailure(
        ErrorCode.PDF_UNREADABLE,
        broken_message("internal structure"),
        reason="parse_failed",
        parser="docling-parse",
        parser_message=" | ".join(errors)[:300],
    )


def _stage_pages(pages: int, *, ocr: bool) -> dict[str, int]:
    """The pages each model stage will see from a document of ``pages`` pages."""
    stages = {"layout": pages, "table": pages}
    if ocr:
        stages["ocr"] = pages
    return stages


def _reset_peak(index: int) -> None:
    import torch

    torch.cuda.reset_peak_memory_stats(index)


def _peak(index: int) -> int:
    import torch

    return int(torch.cuda.max_memory_allocated(index))


def _empty_cache() -> None:
    import torch

    torch.cuda.empty_cache()
