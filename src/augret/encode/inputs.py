"""UniIR's input rules: which text and image of a query or candidate get embedded.

* Candidates: ``format_string(txt)`` and the image; no instruction.
* Queries: ``format_string(format_string(prompt) + " " + query_txt)`` where the prompt is
  looked up by (qid dataset prefix, query modality, modality of the positive candidates);
  image-only queries get the prompt alone as their text. ``instruction="first"`` takes
  ``prompt_1`` (deterministic, the Pyserini convention), ``"random"`` a prompt seeded by
  ``(seed, qid)`` (UniIR draws one at random), ``"none"`` no prompt (UniIR's "no instruct").
* The positive's modality comes from the query's ``task_id``, else from the task of its file,
  else from a pool lookup of its first positive with the query's dataset prefix (UniIR's
  filter for OVEN/InfoSeek cross-listing).
"""

from __future__ import annotations

from typing import Any

from augret.data.ids import TASKS, parse_id
from augret.data.instructions import InstructionTable
from augret.data.mbeir import MBEIRDir
from augret.data.records import Candidate, Query
from augret.data.text import format_string, instructed_text
from augret.encode.base import Item

__all__ = ["INSTRUCTION_MODES", "candidate_item", "positive_modality", "query_item",
           "query_prompt"]

INSTRUCTION_MODES = ("first", "random", "none")


def positive_modality(query: Query, *, file_task: Any = None, lookup: Any = None) -> str | None:
    """The modality of a query's positive candidates (``None`` when unknown).

    Args:
        query: The query.
        file_task: The :class:`~augret.data.ids.Task` of the query's file, if known.
        lookup: A :class:`~augret.data.lookup.PoolLookup` over the pool, if available.
    """
    if query.task_id is not None:
        return TASKS[query.task_id].cand_modality
    if file_task is not None:
        return file_task.cand_modality
    if lookup is not None:
        same = [d for d in query.pos_cand_list if parse_id(d)[0] == query.dataset_id]
        for did in same or list(query.pos_cand_list):
            if did in lookup:
                return lookup.modality(did)
    return None


def query_prompt(query: Query, table: InstructionTable | None, mode: str, *,
                 cand_modality: str | None, seed: int = 2023) -> str | None:
    """The instruction of a query, or ``None`` (mode ``none``, or no row for its key)."""
    if mode == "none" or table is None or cand_modality is None:
        return None
    try:
        return table.choose(query.dataset_id, query.query_modality, cand_modality, mode=mode,
                            seed=seed, qid=query.qid)
    except KeyError:
        return None


def query_item(query: Query, data: MBEIRDir, prompt: str | None, *,
               text: str | None = None, separate: bool = False) -> Item:
    """The :class:`Item` of a query (``text`` overrides ``query_txt``, e.g. the raw text of an
    enhanced row).

    ``separate`` (encoders with ``separate_instruction``, the MLLM embedders): the raw text
    and the prompt go in ``Item.text`` and ``Item.instruction``, for the encoder's prompt
    style to place; otherwise the prompt is prefixed to the text as UniIR does.
    """
    raw = query.query_txt if text is None else text
    image = data.resolve_image(query.query_img_path) if query.query_img_path else None
    if separate:
        return Item((raw or "").strip() or None, image, instruction=prompt or None)
    body = instructed_text(prompt, raw) if prompt else format_string(raw)
    return Item(body or None, image)


def candidate_item(cand: Candidate, data: MBEIRDir, *, text: str | None = None) -> Item:
    """The :class:`Item` of a pool candidate (``text`` overrides ``txt``)."""
    body = format_string(cand.txt if text is None else text)
    image = data.resolve_image(cand.img_path) if cand.img_path else None
    return Item(body or None, image)
