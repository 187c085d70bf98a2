"""RapidOCR's engine as docling loaded it: built while the worker loads, and where it really runs.

RapidOCR (3.10) builds its detector, classifier and recognizer on the first page it reads, not
when docling creates it. Left so, a missing or broken OCR model would fail the first scan rather
than the start, and at load there would be nothing to read the device off. So the worker has
them built on the model thread while it loads (``load``), and ``devices`` reads where they live:
the torch engine's parameters, or the providers of the onnxruntime sessions (which fall back to
the CPU without a word where onnxruntime has no CUDA provider).
"""

from __future__ import annotations

from typing import Any

from sir_convert_a_lot.backends.docling_pipeline import onnx_devices, tensor_devices

# RapidOCR's parts: the switch that turns one on, the attribute it is kept in, its loader.
PARTS = (
    ("use_det", "text_det", "_load_det_model"),
    ("use_cls", "text_cls", "_load_cls_model"),
    ("use_rec", "text_rec", "_load_rec_model"),
)

# The package of each rapidocr engine's session class, by the name gpu.ocr_backend gives it.
ENGINE_PACKAGES = {"pytorch": "torch", "onnxruntime": "onnxruntime"}


def load(ocr_model: Any) -> None:
    """Build the parts RapidOCR will use now (on the model thread: the torch engine places its
    weights on the device here). docling's OCR model with OCR off has no reader: nothing to do."""
    reader = getattr(ocr_model, "reader", None)
    if reader is None:
        return
    for switch, _attribute, loader in PARTS:
        if getattr(reader, switch, True):
            getattr(reader, loader)()


def sessions(ocr_model: Any) -> list[Any]:
    """The loaded parts' inference sessions (RapidOCR's ``TorchInferSession``,
    ``OrtInferSession``, ...)."""
    reader = getattr(ocr_model, "reader", None)
    found = []
    for _switch, attribute, _loader in PARTS:
        session = getattr(getattr(reader, attribute, None), "session", None)
        if session is not None:
            found.append(session)
    return found


def engines(ocr_model: Any) -> set[str]:
    """The engines the loaded parts run on ("torch", "onnxruntime", or rapidocr's own name)."""
    found = set()
    for session in sessions(ocr_model):
        # rapidocr.inference_engine.<engine>.main.<Engine>InferSession
        package = type(session).__module__.split(".")
        name = package[2] if package[:2] == ["rapidocr", "inference_engine"] else ""
        found.add(ENGINE_PACKAGES.get(name, name or type(session).__name__))
    return found


def devices(ocr_model: Any) -> set[str]:
    """Device types of the loaded parts: the torch engine's parameters and buffers, the
    onnxruntime sessions' first providers. Empty when nothing is loaded (OCR off)."""
    found: set[str] = set()
    for session in sessions(ocr_model):
        found |= tensor_devices(session) | onnx_devices(session)
    return found
