"""TableFormer's tag decoder stepping several tables at once, each exactly as it steps alone.

A table decoded among others must come out bitwise as it does alone, or a document's Markdown
would depend on which documents shared its model call. Batching breaks that quietly. Measured
on this project's CPU (torch.equal): a linear layer's row changes with the row count (1, 2 and 4
rows give three different results) and, on two threads at counts not a multiple of 4, with the
row's position; the fused attention kernel (``scaled_dot_product_attention``) changes a batch
entry with the batch size and its position; the encoder's convolutions change with the batch.
On a GPU cuBLAS and cuDNN choose kernels by shape, and TF32 makes their differences larger. So
nothing here lets a shape depend on the company a table keeps:

- everything done once per table (image encoder, the tag transformer's encoder, the image's keys
  and values for each decoder layer) runs on that table alone, a batch of one;
- the tag decoder runs on a fixed slab of ``LANES`` lanes, one table per lane, empty lanes
  zeros, a finished table's lane still stepping, so every kernel sees the same shapes whatever
  the lanes hold, and a table alone is a slab with one lane used;
- attention is two batched matrix products and a softmax, one (lane, head) per batch entry,
  not the fused kernel.

What is then left to the kernels is treating the rows of one fixed-shape product alike, which
is not a given (on this CPU the batched products of the tiny test stand-in's attention do not,
the published-size model's do). ``lanes_for`` checks it once per model and device with the
weights in use: a table stepped alone and in every lane of a full slab among others must match
bitwise; if it does not, the slab is one lane (tables one at a time, exact by construction).
Eight lanes on a CPU: a slab of eight costs about what three tables alone do (``table_cost``).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LANES = {"cpu": 8, "cuda": 32}  # tables stepped together on each kind of device
CAPACITY_STEP = 128  # the tags' key and value buffers grow by this many positions at a time

_checked: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], int]] = weakref.WeakKeyDictionary()


def tag_memory(transformer: Any, encoded: Tensor) -> Tensor:
    """The tag transformer's encoding of one table's image: (positions, 1, dim)."""
    filtered = transformer._input_filter(encoded.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    batch, dim = filtered.size(0), filtered.size(-1)
    inputs = filtered.reshape(batch, -1, dim).permute(1, 0, 2)
    positions = inputs.shape[0]
    shape = (batch * transformer._n_heads, positions, positions)
    mask = torch.zeros(shape, dtype=torch.bool, device=inputs.device)  # attends everywhere
    memory: Tensor = transformer._encoder(inputs, mask=mask)
    return memory


ImageKeys = list[tuple[Tensor, Tensor]]
"""One table's image keys (transposed: heads, head dim, positions) and values (heads, positions,
head dim) for each decoder layer's cross-attention."""


def image_keys(transformer: Any, memory: Tensor) -> ImageKeys:
    """The keys and values each decoder layer's cross-attention reads from one table's image."""
    keys = []
    for layer in transformer._decoder.layers:
        cross = layer.multihead_attn
        key, value = (_heads(_project(cross, memory, i), cross.num_heads)[0] for i in (1, 2))
        keys.append((key.transpose(1, 2).contiguous(), value.contiguous()))
    return keys


class Slab:
    """The tag decoder over ``lanes`` lanes: lane j holds the table of ``tables[j]``, the lanes
    past them are empty. ``step`` takes each lane's newest tag and gives each lane's decoder
    state; ``logits`` its tag scores."""

    def __init__(self, transformer: Any, tables: list[ImageKeys], lanes: int) -> None:
        self.transformer = transformer
        self.lanes = lanes
        self.length = 0
        self.layers = [
            _Layer(layer, [table[index] for table in tables], lanes)
            for index, layer in enumerate(transformer._decoder.layers)
        ]

    def step(self, tags: list[int], device: torch.device) -> Tensor:
        """tags: each used lane's newest tag; returns the last layer's output, (lanes, dim)."""
        padded = tags + [0] * (self.lanes - len(tags))  # any tag: an empty lane's output is unread
        token = torch.tensor([padded], dtype=torch.long, device=device)
        x = self.transformer._embedding(token)[0]
        x = x + self.transformer._positional_encoding.pe[self.length]
        self.length += 1
        for layer in self.layers:
            x = layer.step(x, self.length)
        return x

    def logits(self, state: Tensor) -> Tensor:
        out: Tensor = self.transformer._fc(state)
        return out


class _Layer:
    """One decoder layer for the slab: the tables' image keys and values in their lanes (zeros in
    empty ones), the tags' keys and values written into buffers as they come."""

    def __init__(self, layer: Any, tables: list[tuple[Tensor, Tensor]], lanes: int) -> None:
        self.layer = layer
        self.heads = layer.multihead_attn.num_heads
        keys_t, values = tables[0]
        self.memory_keys_t = keys_t.new_zeros((lanes, *keys_t.shape))
        self.memory_values = values.new_zeros((lanes, *values.shape))
        for lane, (keys_t, values) in enumerate(tables):
            self.memory_keys_t[lane], self.memory_values[lane] = keys_t, values
        self.keys = values.new_zeros((lanes, self.heads, 0, values.size(-1)))
        self.values = self.keys

    def step(self, x: Tensor, length: int) -> Tensor:
        """x: the layer's input for each lane's newest tag, (lanes, dim); length: tags so far."""
        own = self.layer.self_attn
        lanes, dim = x.shape
        assert own.in_proj_bias is not None  # checked by accelerate
        packed = F.linear(x, own.in_proj_weight, own.in_proj_bias)
        query, key, value = (
            part.reshape(lanes, self.heads, 1, -1) for part in packed.split(dim, dim=1)
        )
        self._grow(length)
        self.keys[:, :, length - 1 : length] = key
        self.values[:, :, length - 1 : length] = value
        keys = self.keys[:, :, :length]
        attended = _attend(query, keys.transpose(2, 3), self.values[:, :, :length])
        x = self.layer.norm1(x + own.out_proj(attended.reshape(lanes, dim)))
        cross = self.layer.multihead_attn
        query = F.linear(x, cross.in_proj_weight[:dim], cross.in_proj_bias[:dim])
        query = query.reshape(lanes, self.heads, 1, -1)
        attended = _attend(query, self.memory_keys_t, self.memory_values)
        x = self.layer.norm2(x + cross.out_proj(attended.reshape(lanes, dim)))
        feed = self.layer.linear2(self.layer.activation(self.layer.linear1(x)))
        out: Tensor = self.layer.norm3(x + feed)
        return out

    def _grow(self, length: int) -> None:
        """Room for ``length`` tags' keys and values, grown in fixed steps (the same whatever
        the lanes hold, so the buffers' strides are too)."""
        if length <= self.keys.size(2):
            return
        lanes, heads, room, head_dim = self.keys.shape
        shape = (lanes, heads, room + CAPACITY_STEP, head_dim)
        keys, values = self.keys.new_zeros(shape), self.keys.new_zeros(shape)
        keys[:, :, :room], values[:, :, :room] = self.keys, self.values
        self.keys, self.values = keys, values


def _attend(query: Tensor, keys_t: Tensor, values: Tensor) -> Tensor:
    """Scaled dot-product attention as two batched products (one per lane and head) and a
    softmax: query (lanes, heads, 1, d), keys_t (lanes, heads, d, n), values (.., n, d)."""
    scores = torch.matmul(query * query.size(-1) ** -0.5, keys_t)
    return torch.matmul(scores.softmax(dim=-1), values)


def _heads(x: Tensor, heads: int) -> Tensor:
    """(length, batch, dim) -> (batch, heads, length, dim / heads)."""
    length, batch, dim = x.shape
    return x.reshape(length, batch, heads, dim // heads).permute(1, 2, 0, 3)


def _project(attention: nn.MultiheadAttention, x: Tensor, which: int) -> Tensor:
    """The query (0), key (1) or value (2) projection of a packed-projection attention."""
    dim = attention.embed_dim
    rows = slice(which * dim, (which + 1) * dim)
    bias = attention.in_proj_bias
    assert bias is not None  # checked by accelerate
    return F.linear(x, attention.in_proj_weight[rows], bias[rows])


def lanes_for(transformer: Any, device: torch.device) -> int:
    """The slab's lane count on ``device``: ``LANES``' when a lane's result has been seen not to
    depend on its position or its neighbours there, else 1. Checked once per model and device."""
    wanted = LANES.get(device.type, 1)
    if wanted <= 1:
        return 1
    known = _checked.setdefault(transformer, {})
    if (device.type, wanted) not in known:
        agree = _lanes_agree(transformer, wanted, device)
        known[(device.type, wanted)] = wanted if agree else 1
    return known[(device.type, wanted)]


def _lanes_agree(transformer: Any, lanes: int, device: torch.device) -> bool:
    """A random table (random image keys, random tags) stepped alone, then in every lane of a
    full slab among other random tables: its lane must match bitwise every time."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    cross = transformer._decoder.layers[0].multihead_attn
    heads, head_dim = cross.num_heads, cross.embed_dim // cross.num_heads
    positions, head = transformer._enc_image_size**2, transformer._fc

    def table() -> ImageKeys:
        def draw(*shape: int) -> Tensor:
            return torch.randn(shape, generator=generator).to(device)

        return [
            (draw(heads, head_dim, positions), draw(heads, positions, head_dim))
            for _ in transformer._decoder.layers
        ]

    def run(tables: list[ImageKeys], tags: list[list[int]]) -> list[Tensor]:
        slab = Slab(transformer, tables, lanes)
        states = [slab.step(step, device) for step in tags]
        if isinstance(head, nn.Linear):  # the tag head as a plain product, not through hooks
            states.append(F.linear(states[-1], head.weight, head.bias))
        return states

    with torch.no_grad():
        probe, others = table(), [table(), table()]
        steps = 8  # tags: enough for the self-attention to leave the smallest products
        tags = torch.randint(0, 2, (steps, lanes), generator=generator).tolist()  # <pad>, <unk>
        alone = [out[0] for out in run([probe], [row[:1] for row in tags])]
        for lane in range(lanes):
            tables = [others[(j + lane) % 2] for j in range(lanes)]
            tables[lane] = probe
            shifted = [[*row[lanes - lane :], *row[: lanes - lane]] for row in tags]
            got = run(tables, shifted)
            if not all(torch.equal(g[lane], a) for g, a in zip(got, alone, strict=True)):
                return False
    return True
