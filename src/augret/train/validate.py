"""A small in-training retrieval check: hit@k of a query subset against a candidate subset.

Queries: the first ``size`` rows of a query file (instruction ``prompt_1``). Candidates: the
first ``max_candidates`` rows of the pool plus every positive of those queries. Exact cosine
search; hit@k as UniIR's "Recall@k" (any positive in the top k).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from augret._lazy import require
from augret.data.lookup import PoolLookup
from augret.data.mbeir import MBEIRDir, iter_candidates, iter_queries
from augret.encode.base import Item
from augret.encode.inputs import candidate_item, positive_modality, query_item, query_prompt
from augret.errors import DataFormatError

__all__ = ["RetrievalCheck", "build_check", "run_check"]


@dataclass
class RetrievalCheck:
    """The fixed inputs of a check."""

    queries: list[Item]
    positives: list[set[int]]  # candidate row numbers relevant to each query
    candidates: list[Item]

    def __len__(self) -> int:
        return len(self.queries)


def build_check(data: MBEIRDir, query_file: Path, pool_files: list[Path], *, size: int,
                max_candidates: int, view: str = "raw",
                separate_instruction: bool = False) -> RetrievalCheck:
    """Read the subset (``view``: which texts of an enhanced directory to use;
    ``separate_instruction``: instructions in ``Item.instruction``, for MLLM embedders)."""
    table = data.instructions() if data.instructions_file() else None
    queries = []
    for q in iter_queries(query_file):
        if len(queries) >= size:
            break
        if q.pos_cand_list:
            queries.append(q)
    lookup = PoolLookup(pool_files)
    cands: dict[str, Any] = {}
    for path in pool_files:
        for c in iter_candidates(path):
            if len(cands) >= max_candidates:
                break
            cands[c.did] = c
    for q in queries:
        for did in q.pos_cand_list:
            if did not in cands and did in lookup:
                cands[did] = lookup.get(did)
    order = {did: i for i, did in enumerate(cands)}
    q_items, positives = [], []
    for q in queries:
        prompt = query_prompt(q, table, "first", cand_modality=positive_modality(q, lookup=lookup))
        text = q.text if view == "enhanced" else q.raw_text
        q_items.append(query_item(q, data, prompt, text=text, separate=separate_instruction))
        positives.append({order[d] for d in q.pos_cand_list if d in order})
    c_items = [candidate_item(c, data, text=c.text if view == "enhanced"
                              else c.raw_text) for c in cands.values()]
    return RetrievalCheck(q_items, positives, c_items)


def _embed(embed: Any, processor: Any, items: list[Item], batch_size: int) -> np.ndarray:
    torch = require("torch", "train")
    out = []
    for start in range(0, len(items), batch_size):
        rows = [processor.prepare(it, key=start + i)
                for i, it in enumerate(items[start:start + batch_size])]
        for r in rows:
            if r.error:
                raise DataFormatError(f"validation item {r.key}: {r.error}")
        with torch.no_grad():
            e = embed(processor.collate(rows))
        out.append(torch.nn.functional.normalize(e.float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def run_check(module: Any, processor: Any, check: RetrievalCheck, *, device: Any,
              autocast: Any, batch_size: int = 256, ks: tuple[int, ...] = (1, 5, 10)
              ) -> dict[str, float]:
    """hit@k of the check (``module(batch)`` → ``(embeddings, ...)``, as the training loop's
    :class:`~augret.train.model.TrainModel` module; it is put in eval mode and back)."""
    def embed(batch: Any) -> Any:
        with autocast():
            return module(batch.to(device))[0]

    was_training = module.training
    module.eval()
    try:
        q = _embed(embed, processor, check.queries, batch_size)
        c = _embed(embed, processor, check.candidates, batch_size)
    finally:
        module.train(was_training)
    scores = q @ c.T
    kmax = min(max(ks), c.shape[0])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :kmax]
    out = {}
    for k in ks:
        hits = [bool(pos & set(row[:k].tolist())) for row, pos in zip(top, check.positives,
                                                                      strict=True)]
        out[f"hit@{k}"] = float(np.mean(hits)) if hits else 0.0
    out["queries"] = len(check.queries)
    out["candidates"] = len(check.candidates)
    return out
