"""UniIR's in-batch contrastive loss (InfoNCE), with candidates gathered across ranks.

``score = normalize(q) @ normalize(p_all).T * exp(logit_scale)`` and cross-entropy towards
each query's own positive (``arange(B) + rank * B``); ``p_all`` is the all-gather of every
rank's positives *with gradients* (``torch.distributed.nn.functional.all_gather``), so the
loss of ``N`` ranks with batch ``B`` equals that of one process with batch ``N * B``. The
per-rank loss is scaled so that DDP's gradient average gives the gradient of the global mean.

The same loss trains every encoder family (LamRA-Ret's query→candidate InfoNCE is this one
with a fixed temperature). Options beyond UniIR's default: the symmetric loss (adds
candidate→query); hard negatives, gathered like the positives and appended to the candidate
set of every query (UniIR's variant scores each query against its own negatives and a few
in-batch positives), with an optional false-negative filter (a hard negative more similar to
a query than ``neg_max_sim`` is left out of that query's candidates); skipped examples, whose
rows are masked out on both sides.
"""

from __future__ import annotations

import warnings
from typing import Any

from augret._lazy import require

__all__ = ["at_least_fp32", "contrastive_loss"]


def at_least_fp32(x: Any) -> Any:
    """``x`` in float32, or float64 when it is (half precision is promoted, nothing lowered)."""
    torch = require("torch", "train")
    return x if x.dtype == torch.float64 else x.float()


def _gather(x: Any, world: int, grad: bool) -> Any:
    torch = require("torch", "train")
    if world == 1:
        return x
    if grad:
        from torch.distributed.nn.functional import all_gather

        # UniIR's differentiable gather; newer torch calls it deprecated in favour of a private
        # module whose backward needs reduce-scatter, which gloo lacks.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.cat(all_gather(x.contiguous()), dim=0)
    parts = [torch.empty_like(x) for _ in range(world)]
    torch.distributed.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def contrastive_loss(q: Any, p: Any, logit_scale: Any, *, valid: Any, negatives: Any = None,
                     neg_valid: Any = None, rank: int = 0, world: int = 1, gather: bool = True,
                     symmetric: bool = False, neg_max_sim: float | None = None
                     ) -> tuple[Any, Any, Any]:
    """In-batch contrastive loss of one rank.

    Args:
        q: ``[B, D]`` query embeddings (not normalised).
        p: ``[B, D]`` positive candidate embeddings.
        logit_scale: The log temperature (a parameter; ``exp`` is applied here).
        valid: ``[B]`` bool, False for skipped examples.
        negatives: ``[B, k, D]`` hard negatives, or ``None``.
        neg_valid: ``[B, k]`` bool.
        rank: This rank.
        world: Number of ranks.
        gather: Gather candidates across ranks (otherwise each rank uses its own batch).
        symmetric: Average with the candidate→query loss.
        neg_max_sim: False-negative filter: hard negatives whose cosine similarity to a query
            is above this are masked out of that query's row.

    Returns:
        ``(loss, accuracy, n_valid)``: the loss to backpropagate (scaled so the mean over
        ranks is the global mean over valid queries), the global in-batch top-1 accuracy and
        the global count of valid queries.
    """
    torch = require("torch", "train")
    F = torch.nn.functional
    b = q.shape[0]
    world_eff = world if gather else 1
    rank_eff = rank if gather else 0
    q = F.normalize(at_least_fp32(q), dim=-1)
    p = F.normalize(at_least_fp32(p), dim=-1)
    scale = logit_scale.exp()
    p_all = _gather(p, world_eff, grad=True)
    cand_valid = _gather(valid.to(torch.uint8), world_eff, grad=False).bool()
    logits = scale * q @ p_all.t()
    masks = [cand_valid]
    if negatives is not None and negatives.shape[1] > 0:
        n = F.normalize(at_least_fp32(negatives), dim=-1).reshape(-1, q.shape[1])
        n_all = _gather(n, world_eff, grad=True)
        sims = q @ n_all.t()
        logits = torch.cat([logits, scale * sims], dim=1)
        masks.append(_gather(neg_valid.reshape(-1).to(torch.uint8), world_eff,
                             grad=False).bool())
    col_ok = torch.cat(masks)
    logits = logits.masked_fill(~col_ok[None, :], float("-inf"))
    if neg_max_sim is not None and len(masks) > 1:
        false_neg = sims.detach() > neg_max_sim  # [B, n_neg]: per query and hard negative
        blocked = torch.cat([torch.zeros_like(logits[:, :p_all.shape[0]], dtype=torch.bool),
                             false_neg], dim=1)
        logits = logits.masked_fill(blocked, float("-inf"))
    targets = torch.arange(b, device=q.device) + rank_eff * b
    ce = F.cross_entropy(logits[valid], targets[valid], reduction="sum")
    correct = (logits[valid].argmax(dim=1) == targets[valid]).sum().float()
    if symmetric:
        q_all = _gather(q, world_eff, grad=True)
        logits_c = (scale * p @ q_all.t()).masked_fill(~cand_valid[None, :], float("-inf"))
        ce = 0.5 * (ce + F.cross_entropy(logits_c[valid], targets[valid], reduction="sum"))
    stats = torch.stack([valid.sum().float(), correct.detach()])
    if world > 1:
        torch.distributed.all_reduce(stats)
    n_valid = stats[0].clamp(min=1.0)
    # mean over ranks of (ce_r * world / N) = sum of all ce / N
    loss = ce * (world / n_valid) if world > 1 else ce / n_valid
    return loss, stats[1] / n_valid, stats[0]
