"""The reference captioner: a **simulated perfect VLM** that answers from ground-truth records.

No model runs. The backend answers each request of the enhancement policy from records that
state what the images show, so an experiment can ask "does training on enhanced text help?"
in a world whose ground truth is known (the shapes-world sample), and a user can push their
own annotations through the same policy, store, report and provenance as a real VLM.

``model`` is a JSONL file (or a directory holding ``scenes.jsonl``) of two kinds of lines,
which may be mixed:

* **scene records**, as ``augret mbeir sample`` writes them (``scenes.jsonl``):
  ``{"pixels_sha256": ..., "subject": "red triangle", "keywords": ["red triangle", ...]}``
  (other fields are ground truth for people). The backend recognises an image by the SHA-256
  of its RGB pixel bytes (row-major, 8 bits per channel), as the model would see it.
* **annotations**: ``{"qid": ..., "text": ...}`` for a query, ``{"did": ..., "text": ...}``
  for a candidate, or ``{"id": ..., "text": ...}`` for either: the item's enhanced text,
  whatever its route. An annotation wins over a scene record.

Each generating route is answered as the policy asks a VLM to (``docs/method.md``):

==================================  ======================================================
route                               answer
==================================  ======================================================
``caption_candidate``,              the scene's keywords, subject first, comma-separated
``caption_query``                   (a dense keyword caption)
``entity_rewrite``                  the question with its reference to the image ("this
                                    emblem", "this", "it") replaced by the scene's subject;
                                    never answered
``condense``                        the instruction without filler verbs, pronouns,
                                    articles and conjunctions; from the text alone, since
                                    this route sends no image (as to a real VLM)
==================================  ======================================================

The records are held in memory (one entry per image digest or item id). Outputs are keyed
and stored like any backend's, by content: items with the same route, text and image share
one output, so annotations should not give such items different texts. The model id
(``reference:<file name>@<content digest>``) changes when the records do. Every output it
writes is marked ``"simulated": true`` (see :data:`SIMULATED_NOTE`). An item without a record
fails with that reason, like any failed generation.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from augret.data.jsonl import iter_jsonl
from augret.enhance.backends.base import GenerationParams, GenerationRequest, GenerationResult
from augret.errors import DataFormatError, DataNotFoundError

__all__ = ["SCENES_FILE", "SIMULATED_NOTE", "ReferenceBackend", "condense",
           "entity_rewrite", "pixels_digest", "resolve_records"]

#: The scene file a directory ``model`` points into (what ``augret mbeir sample`` writes).
SCENES_FILE = "scenes.jsonl"
#: What every output of this backend says about itself.
SIMULATED_NOTE = ("reference captioner: a simulated perfect VLM that answers from "
                  "ground-truth records, not a model")

_FILLER_WORDS = (
    "is are was were be been being has have had make makes made change changes changed show "
    "shows put puts turn turns into it its it's this that these those them they he she him "
    "her his their one a an the but and instead now please so then just also should would "
    "could can do does let as")
_FILLER = frozenset(_FILLER_WORDS.split())
_GENERIC_NOUNS = ("shape", "figure", "object", "thing", "one", "item", "picture", "image",
                  "photo")
_NOT_NOUNS = ("is", "was", "a", "an", "the", "and", "or")
_DEICTIC_NOUN = re.compile(r"\b(this|that)\s+([A-Za-z]+)\b", re.IGNORECASE)
_DEICTIC = re.compile(r"\b(this|that|it)\b", re.IGNORECASE)


def pixels_digest(image: Any) -> str:
    """SHA-256 of an image's RGB pixel bytes (row-major; what scene records key on)."""
    return hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()


def resolve_records(model: str | Path, data_dir: str | Path | None = None) -> Path:
    """The records file a ``model`` value names.

    A directory means its ``scenes.jsonl``; a relative path that does not exist from the
    working directory is looked up in ``data_dir`` (so ``model: scenes.jsonl`` names the
    scenes of the data being enhanced).

    Raises:
        DataNotFoundError: No such file.
    """
    p = Path(model)
    candidates = [p]
    if data_dir is not None and not p.is_absolute():
        candidates.append(Path(data_dir) / p)
    for c in candidates:
        if c.is_dir() and (c / SCENES_FILE).is_file():
            return (c / SCENES_FILE).resolve()
        if c.is_file():
            return c.resolve()
    raise DataNotFoundError(f"reference backend: no records file {model!r} (a JSONL of scene "
                            f"records or annotations, or a directory with {SCENES_FILE}; "
                            f"looked in {', '.join(str(c) for c in candidates)})")


def condense(text: str) -> str:
    """An instruction without filler verbs, pronouns, articles and conjunctions.

    >>> condense("Same shape, but blue")
    'same shape, blue'
    >>> condense("Turn it into a ring")
    'ring'
    """
    out: list[str] = []
    comma = False
    for token in text.split():
        word = token.strip(".,;:!?\"'()").lower()
        if word and word not in _FILLER:
            if comma:
                out[-1] += ","
            out.append(word)
            comma = False
        if out and token.rstrip(".!?\"')").endswith((",", ";")):
            comma = True
    return " ".join(out) or text.strip()


def entity_rewrite(question: str, subject: str) -> str:
    """The question with its reference to the image replaced by ``subject``; not answered.

    >>> entity_rewrite("What is this emblem called?", "red triangle")
    'What is the red triangle emblem called?'
    >>> entity_rewrite("Which shape is this?", "blue ring")
    'Which shape is the blue ring?'
    """
    m = _DEICTIC_NOUN.search(question)
    if m is not None and m.group(2).lower() not in _NOT_NOUNS:
        noun = m.group(2)
        new = f"the {subject}" if noun.lower() in _GENERIC_NOUNS else f"the {subject} {noun}"
        return question[: m.start()] + new + question[m.end():]
    m = _DEICTIC.search(question)
    if m is not None:
        return question[: m.start()] + f"the {subject}" + question[m.end():]
    return f"{question.rstrip()} ({subject})"


class ReferenceBackend:
    """Answers enhancement requests from scene records and annotations (no model).

    Args:
        model: A JSONL of scene records and/or annotations, or a directory holding
            ``scenes.jsonl`` (see the module docs).
        revision: Recorded for provenance only.
        batch_size: Accepted for symmetry with the model backends (answers are instant).

    Raises:
        DataNotFoundError: The records file is missing.
        DataFormatError: A line is neither a scene record nor an annotation.
    """

    name = "reference"
    #: Outputs of this backend come from records, not from a model (reports say so).
    simulated = True

    def __init__(self, model: str, *, revision: str | None = None, batch_size: int = 64
                 ) -> None:
        path = resolve_records(model)
        digest = hashlib.sha256()
        self.scenes: dict[str, dict[str, Any]] = {}
        self.annotations: dict[tuple[str, str], str] = {}  # (qid|did|id, id) -> text
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        for number, row in iter_jsonl(path):
            self._add(path, number, row)
        self.path = path
        self.model_id = f"reference:{path.name}@{digest.hexdigest()[:12]}"
        self.revision = revision
        self.batch_size = batch_size

    def _add(self, path: Path, number: int, row: dict[str, Any]) -> None:
        if "text" in row:
            keys = [k for k in ("qid", "did", "id") if k in row]
            if len(keys) != 1 or not isinstance(row["text"], str) or not row["text"].strip():
                raise DataFormatError("an annotation needs one of 'qid', 'did' or 'id' and a "
                                      "non-empty 'text'", path=path, line=number)
            self.annotations[keys[0], str(row[keys[0]])] = row["text"]
        elif "pixels_sha256" in row:
            keywords = row.get("keywords")
            if not isinstance(row.get("subject"), str) or not (
                    isinstance(keywords, list) and keywords and
                    all(isinstance(k, str) for k in keywords)):
                raise DataFormatError("a scene record needs 'subject' (text) and 'keywords' "
                                      "(a non-empty list of text)", path=path, line=number)
            self.scenes[str(row["pixels_sha256"])] = row
        else:
            raise DataFormatError("neither a scene record ('pixels_sha256', 'subject', "
                                  "'keywords') nor an annotation ('qid'/'did'/'id', 'text')",
                                  path=path, line=number)

    def _annotation(self, request: GenerationRequest) -> str | None:
        side = "did" if request.route == "caption_candidate" else "qid"
        return self.annotations.get((side, request.id)) or self.annotations.get(
            ("id", request.id))

    def answer(self, request: GenerationRequest) -> GenerationResult:
        """The reference text of one request (an error result when no record covers it)."""
        note = self._annotation(request)
        if note is not None:
            return _result(note)
        if request.route == "condense":
            return _result(condense(request.text or ""))
        if request.image is None:
            return GenerationResult(None, f"no annotation for item {request.id!r} and no image "
                                          f"to recognise (route {request.route or '?'})")
        scene = self.scenes.get(pixels_digest(request.image))
        if scene is None:
            return GenerationResult(None, f"no annotation for item {request.id!r} and no scene "
                                          f"record for its image in {self.path.name}")
        if request.route == "entity_rewrite":
            return _result(entity_rewrite(request.text or "", scene["subject"]))
        if request.route in ("caption_query", "caption_candidate"):
            return _result(", ".join(scene["keywords"]))
        return GenerationResult(None, f"reference backend: unknown route {request.route!r}")

    def generate(self, requests: Sequence[GenerationRequest], params: GenerationParams
                 ) -> list[GenerationResult]:
        """One answer per request, in order (decoding parameters do not apply)."""
        return [self.answer(r) for r in requests]

    def close(self) -> None:
        """Nothing to release."""


def _result(text: str) -> GenerationResult:
    return GenerationResult(text, output_tokens=len(text.split()), finish_reason="stop")
