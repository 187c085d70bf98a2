"""How docling's standard PDF pipeline is built for this worker, and what can be read off it.

The options of one variant (table mode, OCR or not) map to docling's ``PdfPipelineOptions`` in
one place, used by the backend and by the benchmark's docling-alone side. The pipeline subclass
gives docling's stages no model thread of their own: they call their models directly, and the
backend's shared models (``backends.coalesce``) carry the work to the one model thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Any

from sir_convert_a_lot.backends.base import BackendContext
from sir_convert_a_lot.backends.models import ocr_engine


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


# Pictures are cropped from page images rendered at this scale (144 dpi): docling's default, 1.0,
# makes 72 dpi pictures, too coarse for a figure's small print.
PICTURE_IMAGES_SCALE = 2.0


def pipeline_options(
    context: BackendContext, table_mode: str, ocr_mode: str, pictures: bool = False
) -> Any:
    """docling's PdfPipelineOptions for one variant (a table mode, an ``ocr_mode``, and whether
    pictures are kept as images): what the options map to. OCR, when on, reads whole pages:
    ``force`` every page, ``auto`` the pages ``backends.ocr_pages`` picks (the backend hands the
    OCR model only those). The benchmark's docling-alone side uses the same options, with
    docling's own pipeline class."""
    from docling.datamodel.accelerator_options import AcceleratorOptions
    from docling.datamodel.pipeline_options import (
        OcrMode,
        PdfPipelineOptions,
        RapidOcrOptions,
        TableFormerMode,
        TableStructureOptions,
    )

    batch = context.batch_sizes
    # docling hands RapidOCR's engine the accelerator device (use_cuda, the device id)
    ocr_backend = ocr_engine(context.ocr_backend, context.device)
    return PdfPipelineOptions(
        artifacts_path=context.models_path or None,
        accelerator_options=AcceleratorOptions(device=context.torch_device),
        do_table_structure=True,
        table_structure_options=TableStructureOptions(
            mode=TableFormerMode.ACCURATE if table_mode == "accurate" else TableFormerMode.FAST,
            do_cell_matching=table_mode == "accurate",
        ),
        do_ocr=ocr_mode != "off",
        ocr_options=RapidOcrOptions(mode=OcrMode.FULL_PAGE, backend=ocr_backend),
        layout_batch_size=batch.get("layout", 4),
        ocr_batch_size=batch.get("ocr", 4),
        table_batch_size=batch.get("table", 4),
        do_picture_classification=False,
        do_picture_description=False,
        do_code_enrichment=False,
        do_formula_enrichment=False,
        generate_page_images=False,
        generate_picture_images=pictures,
        images_scale=PICTURE_IMAGES_SCALE if pictures else 1.0,
    )


def tensor_devices(root: object, depth: int = 6) -> set[str]:
    """Device types ("cuda", "cpu") of every torch parameter reachable from ``root``."""
    import torch

    def devices(node: object) -> set[str] | None:
        if isinstance(node, torch.nn.Module):
            found = {p.device.type for p in node.parameters()}
            return found | {b.device.type for b in node.buffers()}
        if isinstance(node, torch.Tensor):
            return {node.device.type}
        return None

    return _gather(root, depth, devices)


def onnx_devices(root: object, depth: int = 8) -> set[str]:
    """Where the onnxruntime sessions reachable from ``root`` run: "cuda" for a session whose
    first provider is CUDA's, else "cpu". RapidOCR asks for CUDA when docling's device is a GPU,
    and onnxruntime quietly falls back to the CPU when it has no CUDA provider (the plain
    ``onnxruntime`` wheel has none), so the session, not the request, says where it runs."""

    def devices(node: object) -> set[str] | None:
        providers = getattr(node, "get_providers", None)
        if not callable(providers) or type(node).__name__ != "InferenceSession":
            return None
        first = (providers() or ["CPUExecutionProvider"])[0]
        return {"cuda" if first == "CUDAExecutionProvider" else "cpu"}

    return _gather(root, depth, devices)


def _gather(root: object, depth: int, devices: Callable[[object], set[str] | None]) -> set[str]:
    """The union of ``devices`` over the objects reachable from ``root`` (attributes, dict
    values, items), ``depth`` levels deep; below an object ``devices`` answers for, no further."""
    found: set[str] = set()
    seen: set[int] = set()

    def walk(node: object, level: int) -> None:
        if level < 0 or id(node) in seen:
            return
        seen.add(id(node))
        answer = devices(node)
        if answer is not None:
            found.update(answer)
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
