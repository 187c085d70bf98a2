"""RapidOCR's models for both of its engines, in the folder docling reads (``RapidOcr/``).

docling asks RapidOCR's registry for the file names of one (engine, PP-OCR version, language,
size); with its defaults (language ``ch``, size ``small``, PP-OCRv6) they are the ones below.

- onnxruntime: symbolic links to the ONNX files the rapidocr wheel ships, real models, so OCR
  on the CPU reads real text.
- torch: ``.pth`` state dicts of rapidocr's own torch networks (built from its
  ``arch_config.yaml`` by the file's name, at the published sizes, which the file name fixes),
  with random weights, stored as float16 (``load_state_dict`` casts them into the float32
  modules), plus the recognizer's character list, taken from the shipped ONNX recognizer.
  They run the real torch OCR code (loading, device placement, detection, classification and
  recognition) on any device; what they read is meaningless.

Random weights are steered just enough to exercise every part: the detector's last bias makes
it mark text nearly everywhere (one box a page, rather than hundreds of noise boxes or none),
the classifier always says upright, and the recognizer's output bias makes it read one
character (``READ``) with a score above RapidOCR's threshold, so every page comes back with an
OCR text cell (a recognizer left at random reads nothing it is sure of, and RapidOCR drops it).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from sir_convert_a_lot.backends.models import RAPIDOCR_FILES

RAPIDOCR_SEED = 4321
DETECTOR_BIAS = 4.0  # sigmoid(4) = 0.98: above RapidOCR's box threshold almost everywhere
CLASSIFIER_BIAS = (5.0, -5.0)  # "0" (upright) over "180" (turned): crops are never flipped
READ = "o"  # the recognizer reads this character, at every step (CTC collapses the repeats)
RECOGNIZER_BIAS = 15.0  # its logit over ~18,700 others: a softmax score near 1


def build_rapidocr(folder: Path, link: Any, write: Any) -> None:
    """Both engines' files in ``folder``; ``link(src, dst)`` and ``write(path, bytes)`` are the
    stand-in builder's idempotent helpers."""
    import rapidocr

    shipped = Path(rapidocr.__file__).resolve().parent / "models"
    folder.mkdir(parents=True, exist_ok=True)
    for name in RAPIDOCR_FILES["onnxruntime"]:
        link(shipped / name, folder / name)
    characters = _characters(shipped / _onnx_recognizer())
    for name in RAPIDOCR_FILES["torch"]:
        if name.endswith(".pth"):
            write(folder / name, _torch_weights(Path(name).stem, characters))
        else:
            write(folder / name, "".join(f"{c}\n" for c in characters).encode())


def _onnx_recognizer() -> str:
    (name,) = [n for n in RAPIDOCR_FILES["onnxruntime"] if "_rec_" in n]
    return name


def _torch_weights(architecture: str, characters: list[str]) -> bytes:
    """A state dict for rapidocr's network ``architecture`` (a key of its arch_config.yaml)."""
    import torch
    from omegaconf import OmegaConf
    from rapidocr.inference_engine.pytorch.networks.architectures.base_model import BaseModel
    from rapidocr.inference_engine.pytorch.networks.main import ModelLoader

    configs: Any = OmegaConf.load(ModelLoader.DEFAULT_CFG_PATH)
    network: Any = BaseModel  # unannotated
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RAPIDOCR_SEED)
        model = network(configs[architecture])
    with torch.no_grad():
        if "_det_" in architecture:
            model.head.binarize.conv3.bias.fill_(DETECTOR_BIAS)
        elif "_cls_" in architecture:
            model.head.fc.bias.copy_(torch.tensor(CLASSIFIER_BIAS))
        else:  # the recognizer: CTC's class 0 is "blank", then the characters in order
            model.head.ctc_head.fc.bias[characters.index(READ) + 1] = RECOGNIZER_BIAS
    state = {
        key: (value.half() if value.is_floating_point() else value).contiguous()
        for key, value in model.state_dict().items()
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _characters(onnx_recognizer: Path) -> list[str]:
    """The recognizer's character list, as its ONNX file carries it."""
    import onnxruntime  # type: ignore[import-untyped]

    session = onnxruntime.InferenceSession(str(onnx_recognizer), providers=["CPUExecutionProvider"])
    text: str = session.get_modelmeta().custom_metadata_map["character"]
    return text.splitlines()  # as rapidocr splits it; from a file it reads one a line
