"""One micro-step of contrastive training, for every encoder family: embed, loss, backward.

A micro-batch arrives as *chunks*: model batches that partition its rows in order (queries,
their positives, then hard negatives). ``module(chunk)`` returns ``(embeddings, log logit
scale)`` and ``loss_fn(embeddings, log logit scale)`` the loss of all rows.

* :func:`full_batch_step`: one chunk, one forward, the loss, one backward.
* :func:`grad_cache_step`: GradCache (Gao et al. 2021). Every chunk is embedded without
  gradients (its RNG state kept); the loss over the whole micro-batch is back-propagated to
  the embeddings (and the temperature) only; then each chunk is embedded again with the same
  RNG state and back-propagated with its cached embedding gradients. The parameters receive
  the gradients of the full-batch loss while only one chunk's activations are alive at a time.

Under DDP gradients are averaged on the backward pass of the last micro-step only (``sync``);
with GradCache on its last chunk, which also carries the temperature's gradient, so every
trained parameter takes part in that synchronised backward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from augret._lazy import require
from augret.train.loss import at_least_fp32

__all__ = ["StepResult", "full_batch_step", "grad_cache_step"]

torch = require("torch", "train")

LossFn = Callable[[Any, Any], tuple[Any, Any, Any]]


@dataclass
class StepResult:
    """What one micro-step reports (detached): loss, in-batch accuracy, valid queries."""

    loss: Any
    accuracy: Any
    n_valid: Any


class _RngState:
    """The CPU (and CUDA device) generator states before a chunk's first forward."""

    def __init__(self, device: Any) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state(device) if self.cuda else None

    @contextlib.contextmanager
    def restored(self) -> Iterator[None]:
        """Run with these states; the generators are put back afterwards."""
        with torch.random.fork_rng(devices=[self.device] if self.cuda else []):
            torch.set_rng_state(self.cpu_state)
            if self.cuda:
                torch.cuda.set_rng_state(self.cuda_state, self.device)
            yield


def full_batch_step(module: Any, chunks: Sequence[Any], loss_fn: LossFn, *, device: Any,
                    autocast: Callable[[], Any], backward: Callable[[Any], None],
                    sync: bool, no_sync: Callable[[], Any]) -> StepResult:
    """Forward all rows at once, the loss, backward (``chunks`` holds one batch).

    Args:
        module: ``batch`` → ``(embeddings, log logit scale)`` (maybe DDP-wrapped).
        chunks: The micro-batch as one model batch.
        loss_fn: ``(embeddings, log logit scale)`` → ``(loss, accuracy, n_valid)``.
        device: Where the batch goes.
        autocast: The forward's autocast context.
        backward: Back-propagates a loss (scaling it for accumulation and the GradScaler).
        sync: Whether DDP averages the gradients in this backward.
        no_sync: DDP's ``no_sync`` context (a null context for one process).
    """
    (batch,) = chunks
    with contextlib.nullcontext() if sync else no_sync():
        with autocast():
            emb, scale = module(batch.to(device))
            loss, acc, n_valid = loss_fn(emb, scale)
        backward(loss)
    return StepResult(loss.detach(), acc, n_valid)


def grad_cache_step(module: Any, chunks: Sequence[Any], loss_fn: LossFn, *, device: Any,
                    autocast: Callable[[], Any], backward: Callable[[Any], None],
                    sync: bool, no_sync: Callable[[], Any]) -> StepResult:
    """The GradCache micro-step (arguments as :func:`full_batch_step`; ``chunks`` are the
    micro-batch's rows in order, any number of them)."""
    states, parts = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_RngState(device))
            with autocast():
                emb, scale = module(chunk.to(device))
            parts.append(at_least_fp32(emb))
    reps = torch.cat(parts).requires_grad_()
    # the temperature is a leaf of its own here: its gradient joins the last chunk's backward
    temp = at_least_fp32(scale.detach()).requires_grad_(bool(scale.requires_grad))
    with autocast():
        loss, acc, n_valid = loss_fn(reps, temp)
    backward(loss)  # gradients of the embeddings (and the temperature) only
    grads = reps.grad.split([len(c) for c in chunks])
    for i, (chunk, state, grad) in enumerate(zip(chunks, states, grads, strict=True)):
        last = i == len(chunks) - 1
        with contextlib.nullcontext() if sync and last else no_sync(), state.restored():
            with autocast():
                emb, scale = module(chunk.to(device))
            surrogate = (at_least_fp32(emb) * grad).sum()
            if last and temp.grad is not None:
                surrogate = surrogate + at_least_fp32(scale) * temp.grad
            surrogate.backward()
    return StepResult(loss.detach(), acc, n_valid)
