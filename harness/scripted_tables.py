"""A TableFormer whose tables end where a script says, for tests and the GPU check.

Random stand-in weights never write ``<end>`` early, so every stand-in table runs to
``max_steps`` and a lockstep batch never sees a table leave it. Here a copy of the model gets a
tag head that writes each table's own scripted tags, keyed on that table's own decoder state,
whichever other tables share its batch: the first step recognises the table (the nearest of each
table's first decoder state, recorded alone), later steps follow the row's own tag history.
Both docling's own ``predict`` and the fast one then decode the scripted lengths.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import torch
from torch import Tensor, nn

from sir_convert_a_lot.backends.tableformer_lanes import lanes_for

CELL_TAGS = ("fcel", "ecel", "lcel", "lcel", "nl", "ucel", "xcel", "ched", "rhed", "srow")


class History(nn.Module):  # type: ignore[misc]
    """Stands in for the tag embedding and keeps each row's tags so far, whether it is handed a
    row's whole history at each step (docling's ``predict``) or each row's newest tag."""

    def __init__(self, embedding: nn.Module, start: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.start = start
        self.rows: list[list[int]] = []

    def forward(self, tokens: Tensor) -> Tensor:
        columns = tokens.t().tolist()
        if tokens.size(0) > 1:
            self.rows = columns
        elif columns[0][0] == self.start:  # a new run: every row's first tag is <start>
            self.rows = [list(column) for column in columns]
        else:
            for row, column in zip(self.rows, columns, strict=True):
                row.extend(column)
        out: Tensor = self.embedding(tokens)
        return out


class RowScripts(nn.Module):  # type: ignore[misc]
    """Stands in for the tag head: each row gets the tags of its own table's script, at its own
    step. The table is recognised at the first step by its decoder state (the nearest of
    ``firsts``, each table's first state alone), the step from the row's own history."""

    def __init__(self, head: nn.Module, history: History, scripts: list[list[int]]) -> None:
        super().__init__()
        self.head = head
        self.history = history
        self.scripts = scripts
        self.recording = False  # each call is a table's first step: keep its state, end
        self.firsts: list[Tensor] = []
        self.tables: list[int] = []

    def forward(self, state: Tensor) -> Tensor:
        logits: Tensor = self.head(state)
        if self.recording:
            self.firsts.append(state[0].clone())
            forced = [self.scripts[0][-1]]
        else:
            forced = [self._tag(row, state[row]) for row in range(state.size(0))]
        mask = torch.full_like(logits, -1e9)
        mask[torch.arange(len(forced)), torch.tensor(forced)] = 0.0
        return logits + mask

    def _tag(self, row: int, state: Tensor) -> int:
        step = len(self.history.rows[row]) - 1
        if step == 0:
            distances = torch.stack([(state - first).norm() for first in self.firsts])
            self.tables[row:] = [int(distances.argmin())]
        script = self.scripts[self.tables[row]]
        return script[min(step, len(script) - 1)]


def scripted_model(model: Any, images: list[Tensor], ends: list[int], seed: int = 5) -> Any:
    """A copy of ``model`` on which ``images[i]`` writes ``<end>`` at step ``ends[i]`` (random
    cell tags before it), in docling's ``predict`` and in the fast one alike."""
    scripted = copy.deepcopy(model)
    scripted._max_pred_len = max(ends) + 10
    words = scripted._init_data["word_map"]["word_map_tag"]
    rng = random.Random(seed)  # noqa: S311 - a script, not a secret
    scripts = [
        [words[rng.choice(CELL_TAGS)] for _ in range(end - 1)] + [words["<end>"]] for end in ends
    ]
    transformer = scripted._tag_transformer
    device = next(transformer.parameters()).device
    lanes_for(transformer, device)  # the lanes are checked once, on the real head
    history = History(transformer._embedding, words["<start>"])
    head = RowScripts(transformer._fc, history, scripts)
    transformer._embedding, transformer._fc = history, head
    head.recording = True
    with torch.no_grad():
        for image in images:
            scripted.predict(image, scripted._max_pred_len, 1)
    head.recording = False
    return scripted
