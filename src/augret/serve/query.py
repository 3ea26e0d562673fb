"""Ad-hoc queries and their results (the Searcher's input and output types)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augret.data.ids import MBEIR_TEST_TASKS, MODALITIES
from augret.errors import ConfigError

__all__ = ["TASK_NAMES", "AdhocQuery", "Hit", "QueryResult"]

#: M-BEIR test task names accepted as a query's ``task``.
TASK_NAMES: tuple[str, ...] = tuple(t.name for t in MBEIR_TEST_TASKS)


@dataclass(frozen=True)
class AdhocQuery:
    """One query typed or uploaded by a user.

    Attributes:
        text: The query text (``None`` or blank: none).
        image: The image file's bytes, or a path to it (``None``: none).
        task: An M-BEIR task name (e.g. ``cirr_task7``): the query gets that task's UniIR
            instruction (when the index was embedded with instructions).
        instruction: A free-text instruction instead (takes precedence over ``task``).
        modality: Keep only candidates of this modality (``text``, ``image``,
            ``image,text``); ``None`` (default, as UniIR) keeps all.
        qid: The caller's id (batch searches, run files).
    """

    text: str | None = None
    image: bytes | str | Path | None = None
    task: str | None = None
    instruction: str | None = None
    modality: str | None = None
    qid: str | None = None

    def check(self) -> None:
        """Raise :class:`~augret.errors.ConfigError` for an unusable query."""
        has_text = bool(self.text and self.text.strip())
        if not has_text and self.image is None:
            raise ConfigError("a query needs text or an image")
        if self.task is not None and self.task not in TASK_NAMES:
            raise ConfigError(f"unknown task {self.task!r}; use an M-BEIR task name such as "
                              "cirr_task7")
        if self.modality is not None and self.modality not in MODALITIES:
            raise ConfigError(f"unknown modality {self.modality!r}; use one of "
                              f"{list(MODALITIES)}")


@dataclass(frozen=True)
class Hit:
    """One retrieved item.

    Attributes:
        id: The candidate id (did).
        rank: 1-based rank.
        score: Cosine similarity (dense), BM25 score, or fused RRF score (hybrid).
        text: The candidate's indexed text (the caption in an enhanced corpus).
        modality: ``text``, ``image`` or ``image,text``.
        image_path: The candidate's image file, or ``None``.
    """

    id: str
    rank: int
    score: float
    text: str | None
    modality: str | None
    image_path: Path | None

    def to_dict(self, image_url: Callable[[str], str] | None = None) -> dict[str, Any]:
        """JSON-ready form; ``image_url(id)`` replaces the file path when given."""
        out: dict[str, Any] = {"id": self.id, "rank": self.rank, "score": self.score,
                               "text": self.text, "modality": self.modality}
        if image_url is not None:
            out["image_url"] = image_url(self.id) if self.image_path is not None else None
        else:
            out["image_path"] = str(self.image_path) if self.image_path is not None else None
        return out


@dataclass(frozen=True)
class QueryResult:
    """The result of one ad-hoc query.

    Attributes:
        original: The text as given.
        rewritten: The text searched with (after query-time enhancement; the original
            when no enhancer is configured or enhancement passed it through).
        task: The task named by the query.
        instruction: The instruction prefixed to the dense query text, if any.
        enhancement: ``{"route", "status", "error"}`` or ``None`` without an enhancer.
        hits: Best first.
        qid: The query's ``qid``.
        seconds: Wall time of the search.
    """

    original: str | None
    rewritten: str | None
    task: str | None
    instruction: str | None
    enhancement: dict[str, Any] | None
    hits: list[Hit] = field(default_factory=list)
    qid: str | None = None
    seconds: float = 0.0

    def to_dict(self, image_url: Callable[[str], str] | None = None) -> dict[str, Any]:
        """JSON-ready form (the HTTP API's response body)."""
        query: dict[str, Any] = {"original": self.original, "rewritten": self.rewritten,
                                 "task": self.task, "instruction": self.instruction,
                                 "enhancement": self.enhancement}
        out: dict[str, Any] = {"qid": self.qid} if self.qid is not None else {}
        out.update(query=query, hits=[h.to_dict(image_url) for h in self.hits],
                   took_ms=round(self.seconds * 1000, 2))
        return out
