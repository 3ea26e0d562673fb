"""UniIR's query instruction table, keyed by (dataset id, query modality, candidate modality)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from augret.data.jsonl import iter_lines
from augret.data.text import format_string
from augret.errors import DataFormatError

__all__ = ["InstructionTable", "read_instructions"]


@dataclass(frozen=True)
class InstructionTable:
    """The prompts of ``instructions/query_instructions.tsv``.

    Attributes:
        prompts: ``{(dataset_id, query_modality, cand_modality): (prompt_1, ...)}``.
    """

    prompts: dict[tuple[int, str, str], tuple[str, ...]]

    def lookup(self, dataset_id: int, query_modality: str, cand_modality: str) -> tuple[str, ...]:
        """All prompts of a key.

        Raises:
            KeyError: The table has no row for the key.
        """
        key = (dataset_id, query_modality, cand_modality)
        if key not in self.prompts:
            raise KeyError(f"no instruction for dataset {dataset_id}, "
                           f"{query_modality} -> {cand_modality}")
        return self.prompts[key]

    def choose(
        self,
        dataset_id: int,
        query_modality: str,
        cand_modality: str,
        *,
        mode: str = "first",
        seed: int = 2023,
        qid: str = "",
    ) -> str:
        """Pick one prompt, ``format_string``-normalised.

        Args:
            dataset_id: Dataset id of the query.
            query_modality: The query's modality.
            cand_modality: The modality of the query's positive candidates.
            mode: ``"first"`` (``prompt_1``, deterministic, the Pyserini convention) or
                ``"random"`` (UniIR's per-query random choice, seeded by ``(seed, qid)`` so it
                does not depend on batch order, workers or GPU count).
            seed: Seed of the random mode.
            qid: The query id (random mode).
        """
        prompts = self.lookup(dataset_id, query_modality, cand_modality)
        if mode == "first":
            return format_string(prompts[0])
        if mode == "random":
            digest = hashlib.sha256(f"{seed}:{qid}".encode()).digest()
            return format_string(prompts[int.from_bytes(digest[:8], "big") % len(prompts)])
        raise ValueError(f"unknown instruction mode {mode!r}; expected 'first' or 'random'")


def read_instructions(path: str | Path) -> InstructionTable:
    """Read UniIR's instruction TSV (one header line; columns: query_modality, cand_modality,
    dataset name, dataset_id, prompts...).

    Raises:
        DataFormatError: A row is short or its dataset id is not an integer.
    """
    prompts: dict[tuple[int, str, str], tuple[str, ...]] = {}
    lines = iter_lines(path)
    next(lines)  # header
    for number, text in lines:
        parts = text.rstrip("\n").split("\t")
        if len(parts) < 5:
            raise DataFormatError(f"expected at least 5 tab-separated columns, got {len(parts)}",
                                  path=path, line=number)
        try:
            dataset_id = int(parts[3])
        except ValueError:
            raise DataFormatError(f"dataset id {parts[3]!r} is not an integer", path=path,
                                  line=number, field="dataset_id") from None
        row = tuple(p.strip() for p in parts[4:] if p.strip())
        if not row:
            raise DataFormatError("row has no prompt", path=path, line=number)
        prompts[(dataset_id, parts[0].strip(), parts[1].strip())] = row
    return InstructionTable(prompts)
