"""Where the fast TableFormer prediction is used, and how it is kept honest while it runs.

``accelerate`` gives a loaded TableFormer the fast ``predict`` (``backends.tableformer_fast``)
only where the installed docling-ibm-models is one it was verified against
(``backends.table_guard``) and the model is built as that code assumes; otherwise docling's own
``predict`` stays, and the journal says why (``table_fast_path_off``).

While it runs, some tables are also predicted by docling-ibm-models' own ``predict``: the first
``CHECK_FIRST`` after each start of the worker, then every ``gpu.table_check_every``-th (0: none).
A table whose two predictions differ (``backends.table_check``) gets docling's, both are written
to the journal (``table_mismatch``), and the fast path is off for the rest of the worker's run:
every later table is docling's own. The counts go to each job's sidecar (``execution.tables``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sir_convert_a_lot import logs
from sir_convert_a_lot.backends import table_guard, tableformer_fast
from sir_convert_a_lot.backends.table_check import difference, report
from sir_convert_a_lot.backends.table_counts import TableCounts

log = logs.get()

CHECK_FIRST = 8
"""Tables checked after each start, whatever ``gpu.table_check_every``: a fault shows at once."""

Prediction = tableformer_fast.Prediction


class FastPath:
    """Whether one backend's TableFormer models take the fast path, and which of their tables
    are checked. Used on the model thread only."""

    def __init__(self, check_every: int) -> None:
        self.check_every = check_every
        self.on = True
        self.predicted = 0  # tables the fast path predicted since the start

    def due(self) -> bool:
        """Count one more table predicted the fast way; True when it is to be checked."""
        self.predicted += 1
        if self.check_every <= 0:
            return False
        after_first = self.predicted - CHECK_FIRST
        return after_first <= 0 or after_first % self.check_every == 0

    def turn_off(self, reason: str, **details: Any) -> None:
        """Off for the rest of the run; said once, with why."""
        if not self.on:
            return
        self.on = False
        log.warning(
            "table_fast_path_off",
            reason=reason,
            version=table_guard.installed_version(),
            **details,
            effect="tables are predicted by docling-ibm-models' own code, several times slower",
        )


def accelerate(tf_predictor: Any, path: FastPath) -> bool:
    """Give ``tf_predictor``'s model the fast ``predict``; False (the model unchanged, ``path``
    off and the journal told why) when it is not the model and library this was verified on."""
    model: Any = getattr(tf_predictor, "_model", None)
    if type(model).__name__ != "TableModel04_rs":
        path.turn_off("other_model", model=type(model).__name__)
        return False
    refused = table_guard.refusal()
    if refused is not None:
        path.turn_off(
            refused.reason, function=refused.function, verified=sorted(table_guard.VERIFIED)
        )
        return False
    if not _layers_as_expected(model):
        path.turn_off("layers_not_as_expected")
        return False
    if not path.on:
        return False
    if not isinstance(model.predict, FastPredict):
        model.predict = FastPredict(model, path)
    return True


class FastPredict:
    """The model's ``predict``: answers from ``ready`` (tables predicted together beforehand,
    ``predict_many``) when the image is one of them, else predicts the table alone; checks the
    tables ``path`` says against docling's own ``predict``. ``counts`` (fast, checked,
    mismatched) only grow, so a caller tells its tables' share by the difference."""

    def __init__(self, model: Any, path: FastPath) -> None:
        self.model = model
        self.path = path
        self.library = model.predict  # docling-ibm-models' own, bound to the model
        self.ready: list[tuple[Tensor, Prediction]] = []
        self.counts = TableCounts()

    @property
    def on(self) -> bool:
        return self.path.on

    def __call__(
        self, imgs: Tensor, max_steps: int, k: int, return_attention: bool = False
    ) -> Prediction:
        if not self.path.on:
            self.ready.clear()
            library: Prediction = self.library(imgs, max_steps, k, return_attention)
            return library
        prediction = self._fast(imgs, max_steps, k)
        checked = self.path.due()
        self.counts += TableCounts(fast=1, checked=int(checked))
        if not checked:
            return prediction
        library = self.library(imgs, max_steps, k, return_attention)
        differs = difference(prediction, library)
        if differs is None:
            return prediction
        self.counts += TableCounts(mismatched=1)
        self.ready.clear()
        log.warning(
            "table_mismatch",
            **report(prediction, library),
            effect="this table gets docling's own prediction",
        )
        self.path.turn_off("mismatch", differs=differs)
        return library

    def _fast(self, imgs: Tensor, max_steps: int, k: int) -> Prediction:
        for index, (image, prediction) in enumerate(self.ready):
            if image.shape == imgs.shape and torch.equal(image, imgs):
                del self.ready[index]
                return prediction
        return tableformer_fast.predict(self.model, imgs, max_steps, k)


def _layers_as_expected(model: Any) -> bool:
    """Post-norm decoder layers whose attentions are plain packed-projection attentions."""
    transformer = getattr(model, "_tag_transformer", None)
    decoder = getattr(transformer, "_decoder", None)
    layers = getattr(decoder, "layers", None)
    if not layers or type(layers[0]).__name__ != "TMTransformerDecoderLayer":
        return False
    if any(getattr(layer, "norm_first", False) for layer in layers):
        return False
    attentions = [a for layer in layers for a in (layer.self_attn, layer.multihead_attn)]
    return all(_plain_attention(a) for a in attentions)


def _plain_attention(attention: nn.MultiheadAttention) -> bool:
    return (
        not attention.batch_first
        and attention._qkv_same_embed_dim
        and attention.in_proj_bias is not None
        and attention.bias_k is None
        and not attention.add_zero_attn
    )
