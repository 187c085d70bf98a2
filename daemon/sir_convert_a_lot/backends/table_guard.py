"""Which docling-ibm-models the fast TableFormer prediction was verified against.

``backends.tableformer_fast`` re-implements arithmetic that lives in docling-ibm-models: the
model's ``predict`` (greedy tag decoding with its structure corrections and span rules), the
tag decoder's layers (one step at a time), the positional encoding, and the cell box decoder
with its attention. It is right only for the code it was checked against, so it is installed
only where the installed version is one verified here *and* the source of every function it
re-implements is byte for byte the one verified (a patched or rebuilt wheel with the same
version number is caught too). Anything else keeps docling's own prediction.

What is not listed, on purpose: functions the fast path calls rather than re-implements (the
image encoder, ``mergebboxes``, ``_init_hidden_state``, the box and class heads) change both
predictions alike; ``Tag_Transformer.__init__`` is listed because it decides the decoder
layers' configuration (post-norm, activation) that the fast path assumes.

To verify a new version: run ``tests/backends/test_tableformer_fast.py`` and the table tests of
``tests/backends/test_docling_batching.py`` against it, read the diff of the functions below,
then add its hashes (``source_hashes()``) under its version.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

PACKAGE = "docling-ibm-models"
MODULES = "docling_ibm_models.tableformer.models.table04_rs"

REIMPLEMENTED = {
    "TableModel04_rs.predict": "tablemodel04_rs",
    "BBoxDecoder.inference": "bbox_decoder_rs",
    "CellAttention.forward": "bbox_decoder_rs",
    "TMTransformerDecoder.forward": "transformer_rs",
    "TMTransformerDecoderLayer.forward": "transformer_rs",
    "PositionalEncoding.forward": "transformer_rs",
    "Tag_Transformer.__init__": "transformer_rs",
}
"""The functions whose arithmetic the fast path does itself: qualified name -> its module (in
``MODULES``)."""

VERIFIED: dict[str, dict[str, str]] = {
    "4.0.4": {
        "TableModel04_rs.predict": (
            "b53fd1eaa75e5e4be71944e501d2d685e3c36989878e91746610cf3c074f89c8"
        ),
        "BBoxDecoder.inference": "d3f54cb30257543d689809e6669e4232ed352b4e632b07ed9f83adff135fcda4",
        "CellAttention.forward": "b405ad1f7c9fea9e28648753328605db59bd535bf38d248744aea6d0b17f3ab5",
        "TMTransformerDecoder.forward": (
            "2e8af2920299be503081006cd4c2bbdd976ec200adb3acf4afbebf0504521e42"
        ),
        "TMTransformerDecoderLayer.forward": (
            "771872300b74970af3dc83f243c9f7faaa4f3710dff880e67327d0d531a2624d"
        ),
        "PositionalEncoding.forward": (
            "de6b8dcc94a865e985bceab15ff3f530ecc29779042cf2aaa3ecd9f6d9fa1cb9"
        ),
        "Tag_Transformer.__init__": (
            "dfdc430ac48a3b4bbee21977b122883f66dfa7f141703a4233355c05c57d39a1"
        ),
    },
}
"""Per verified version, the SHA-256 of ``inspect.getsource`` of each re-implemented function."""


@dataclass(frozen=True)
class Refusal:
    """Why the fast path stays off: ``reason`` is ``unverified_version`` (no hashes for this
    version), ``source_changed`` (``function``'s source differs from the verified one) or
    ``function_missing`` (``function`` is gone)."""

    reason: str
    version: str
    function: str = ""


def installed_version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "not installed"


def refusal() -> Refusal | None:
    """None when the installed docling-ibm-models is one the fast path was verified against."""
    installed = installed_version()
    verified = VERIFIED.get(installed)
    if verified is None:
        return Refusal("unverified_version", installed)
    for function in REIMPLEMENTED:
        found = _source_hash(function)
        if found is None:
            return Refusal("function_missing", installed, function)
        if found != verified.get(function):
            return Refusal("source_changed", installed, function)
    return None


def source_hashes() -> dict[str, str | None]:
    """The installed library's hashes, as ``VERIFIED`` lists them (None: the function is gone)."""
    return {function: _source_hash(function) for function in REIMPLEMENTED}


def _source_hash(function: str) -> str | None:
    try:
        found: object = importlib.import_module(f"{MODULES}.{REIMPLEMENTED[function]}")
        for part in function.split("."):
            found = getattr(found, part)
        source = inspect.getsource(found)  # type: ignore[arg-type]
    except (ImportError, AttributeError, OSError, TypeError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()
