"""How docling's standard PDF pipeline is built for this worker, and what can be read off it.

The options of one variant (table mode, OCR or not) map to docling's ``PdfPipelineOptions`` in
one place, used by the backend and by the benchmark's docling-alone side. The pipeline subclass
gives docling's stages no model thread of their own: they call their models directly, and the
backend's shared models (``backends.coalesce``) carry the work to the one model thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any

from sir_convert_a_lot.backends.base import BackendContext


def pipeline_class() -> type:
    """docling's StandardPdfPipeline whose stages call their models from their own threads
    (no per-stage model thread): the shared models send the work on to the one model thread."""
    from docling.pipeline import standard_pdf_pipeline as standard

    stage_names = standard._MODEL_STAGE_NAMES

    class SharedModelThreadPipeline(standard.StandardPdfPipeline):  # type: ignore[misc]
        def _borrow_model_threads(self) -> dict[str, Executor | None]:
            return dict.fromkeys(stage_names, None)

        def _return_model_threads(self, model_threads: object, stages: object) -> None:
            return None

    return SharedModelThreadPipeline


def pipeline_options(context: BackendContext, table_mode: str, ocr: bool) -> Any:
    """docling's PdfPipelineOptions for one variant: what the options above map to. The
    benchmark's docling-alone side uses the same, with docling's own pipeline class."""
    from docling.datamodel.accelerator_options import AcceleratorOptions
    from docling.datamodel.pipeline_options import (
        PdfPipelineOptions,
        RapidOcrOptions,
        TableFormerMode,
        TableStructureOptions,
    )

    batch = context.batch_sizes
    # torch-engine OCR follows the accelerator device; onnxruntime stays on the CPU.
    ocr_backend = context.ocr_backend if context.device == "cuda" else "onnxruntime"
    return PdfPipelineOptions(
        artifacts_path=context.models_path or None,
        accelerator_options=AcceleratorOptions(device=context.torch_device),
        do_table_structure=True,
        table_structure_options=TableStructureOptions(
            mode=TableFormerMode.ACCURATE if table_mode == "accurate" else TableFormerMode.FAST,
            do_cell_matching=table_mode == "accurate",
        ),
        do_ocr=ocr,
        ocr_options=RapidOcrOptions(force_full_page_ocr=True, backend=ocr_backend),
        layout_batch_size=batch.get("layout", 4),
        ocr_batch_size=batch.get("ocr", 4),
        table_batch_size=batch.get("table", 4),
        do_picture_classification=False,
        do_picture_description=False,
        do_code_enrichment=False,
        do_formula_enrichment=False,
        generate_page_images=False,
        generate_picture_images=False,
    )


def tensor_devices(root: object, depth: int = 6) -> set[str]:
    """Device types ("cuda", "cpu") of every torch parameter reachable from ``root``."""
    import torch

    found: set[str] = set()
    seen: set[int] = set()

    def walk(node: object, level: int) -> None:
        if level < 0 or id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, torch.nn.Module):
            found.update(p.device.type for p in node.parameters())
            found.update(b.device.type for b in node.buffers())
            return
        if isinstance(node, torch.Tensor):
            found.add(node.device.type)
            return
        for child in _children(node):
            walk(child, level - 1)

    walk(root, depth)
    return found


def _children(node: object) -> Iterator[object]:
    if isinstance(node, dict):
        yield from node.values()
    elif isinstance(node, list | tuple | set):
        yield from node
    elif hasattr(node, "__dict__") and not isinstance(node, type):
        yield from vars(node).values()


def initialize_pipeline(converter: Any) -> Any:
    from docling.datamodel.base_models import InputFormat

    converter.initialize_pipeline(InputFormat.PDF)
    for pipeline in converter.initialized_pipelines.values():
        return pipeline
    return None
