"""torch's global kernel switches set for exact model calls, and put back as found.

The fast TableFormer (``backends.tableformer_fast``) and the layout slabs
(``backends.layout_slabs``) both promise a result that does not depend on what shares a call,
so neither may let cuDNN pick an algorithm by benchmark. The switches are process-wide, so one
lock guards them for both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_FLAGS = threading.RLock()


@contextmanager
def exact_kernels(keep_tf32: bool = False) -> Iterator[None]:
    """Deterministic cuDNN, no autotuning, no TF32, while the fast path runs: what a table gives
    must not hinge on which algorithm a benchmark picked or on 10-bit products. The switches are
    global, so they are put back as found (the legacy switches: the newer per-backend ones would
    leave them unreadable). ``keep_tf32`` leaves TF32 as found: the layout slabs need the same
    kernels for every call, not docling's precision changed."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    with _FLAGS:
        saved = (matmul.allow_tf32, cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark)
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark = (
            saved[0] and keep_tf32,
            saved[1] and keep_tf32,
            True,
            False,
        )
        try:
            yield
        finally:
            matmul.allow_tf32, cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark = saved
