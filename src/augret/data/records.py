"""Typed, immutable M-BEIR records: queries and pool candidates.

Parsing is strict about types and modality names and names the offending field. Whether a
record's fields agree with its modality is reported by :meth:`Query.problems` /
:meth:`Candidate.problems` (validation decides how severe that is). Fields beyond the M-BEIR
schema (e.g. ``query_txt_raw`` and ``enhancement`` in an enhanced directory) are kept in
``extra`` and written back unchanged.

Both record types answer the same accessors (``id``, ``text``, ``image_path``, ``modality``,
``raw_text``, :meth:`~Query.field_text`, ``TEXT_FIELD`` / ``RAW_TEXT_FIELD``), so code that
handles either never dispatches on the type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, ClassVar

from augret.data.ids import MODALITIES, TASKS, parse_id
from augret.errors import DataFormatError

__all__ = ["Candidate", "Query", "modality_of"]

_QUERY_FIELDS = (
    "qid",
    "query_txt",
    "query_img_path",
    "query_modality",
    "query_src_content",
    "pos_cand_list",
    "neg_cand_list",
    "task_id",
)
_CAND_FIELDS = ("txt", "img_path", "modality", "did", "src_content")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def modality_of(text: str | None, image: str | None) -> str:
    """The M-BEIR modality string of an item with the given text and image."""
    if text and image:
        return "image,text"
    if image:
        return "image"
    if text:
        return "text"
    raise ValueError("an item needs text or an image")


def _fail(message: str, fld: str) -> DataFormatError:
    return DataFormatError(message, field=fld)


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _fail(f"expected a string or null, got {type(value).__name__}", key)


def _req_id(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        what = "missing" if key not in obj else f"expected a string, got {type(value).__name__}"
        raise _fail(what, key)
    try:
        parse_id(value)
    except DataFormatError as exc:
        raise _fail(exc.reason, key) from None
    return value


def _modality(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if value not in MODALITIES:
        if key not in obj:
            raise _fail("missing", key)
        raise _fail(f"unknown modality {value!r}; expected one of {list(MODALITIES)}", key)
    return value


def _src_content(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):  # some tools write the dict itself; keep M-BEIR's string form
        import json

        return json.dumps(value, ensure_ascii=False)
    raise _fail(f"expected a JSON string, object or null, got {type(value).__name__}", key)


def _id_list(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(f"expected a list of ids, got {type(value).__name__}", key)
    out = []
    for i, item in enumerate(value):
        if isinstance(item, dict):  # the HF card's {"did": ...} form
            item = item.get("did")
        if not isinstance(item, str):
            raise _fail(f"item {i} is not an id string", key)
        try:
            parse_id(item)
        except DataFormatError as exc:
            raise _fail(f"item {i}: {exc.reason}", key) from None
        out.append(item)
    return tuple(out)


def _extra(obj: Mapping[str, Any], known: tuple[str, ...]) -> Mapping[str, Any]:
    rest = {k: v for k, v in obj.items() if k not in known}
    return MappingProxyType(rest) if rest else _EMPTY


class _TextFields:
    """What queries and candidates share about their text fields."""

    __slots__ = ()
    TEXT_FIELD: ClassVar[str]
    RAW_TEXT_FIELD: ClassVar[str]
    text: Any
    extra: Mapping[str, Any]

    @property
    def raw_text(self) -> str | None:
        """The text before enhancement (the ``RAW_TEXT_FIELD`` when present, else the text)."""
        return self.field_text(self.RAW_TEXT_FIELD)

    def field_text(self, name: str) -> Any:
        """The value of a text field by name: ``TEXT_FIELD`` is the text, any other name is
        looked up among the extra fields (falling back to the text)."""
        return self.text if name == self.TEXT_FIELD else self.extra.get(name, self.text)


@dataclass(frozen=True, slots=True)
class Query(_TextFields):
    """An M-BEIR query line. Ids are ``"<dataset_id>:<n>"`` strings."""

    qid: str
    query_txt: str | None
    query_img_path: str | None
    query_modality: str
    query_src_content: str | None = None
    pos_cand_list: tuple[str, ...] = ()
    neg_cand_list: tuple[str, ...] = ()
    task_id: int | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)

    TEXT_FIELD: ClassVar[str] = "query_txt"
    RAW_TEXT_FIELD: ClassVar[str] = "query_txt_raw"

    @property
    def id(self) -> str:
        """The query id (``qid``)."""
        return self.qid

    @property
    def text(self) -> str | None:
        """The query text (``query_txt``)."""
        return self.query_txt

    @property
    def image_path(self) -> str | None:
        """The query image path (``query_img_path``), relative to the image root."""
        return self.query_img_path

    @property
    def modality(self) -> str:
        """The query modality (``query_modality``)."""
        return self.query_modality

    @property
    def dataset_id(self) -> int:
        """The dataset id prefix of ``qid``."""
        return parse_id(self.qid)[0]

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Query:
        """Parse one query object.

        Raises:
            DataFormatError: A field is missing or has the wrong type or value; ``field``
                names it (the caller adds file and line).
        """
        task_id = obj.get("task_id")
        if task_id is not None and (isinstance(task_id, bool) or not isinstance(task_id, int)):
            raise _fail(f"expected an integer, got {type(task_id).__name__}", "task_id")
        if task_id is not None and task_id not in TASKS:
            raise _fail(f"unknown task id {task_id}; expected one of {sorted(TASKS)}", "task_id")
        return cls(
            qid=_req_id(obj, "qid"),
            query_txt=_opt_str(obj, "query_txt"),
            query_img_path=_opt_str(obj, "query_img_path"),
            query_modality=_modality(obj, "query_modality"),
            query_src_content=_src_content(obj, "query_src_content"),
            pos_cand_list=_id_list(obj, "pos_cand_list"),
            neg_cand_list=_id_list(obj, "neg_cand_list"),
            task_id=task_id,
            extra=_extra(obj, _QUERY_FIELDS),
        )

    def to_dict(self) -> dict[str, Any]:
        """The M-BEIR JSON object (field order as in the released files, extras last)."""
        out: dict[str, Any] = {
            "qid": self.qid,
            "query_txt": self.query_txt,
            "query_img_path": self.query_img_path,
            "query_modality": self.query_modality,
            "query_src_content": self.query_src_content,
            "pos_cand_list": list(self.pos_cand_list),
            "neg_cand_list": list(self.neg_cand_list),
        }
        if self.task_id is not None:
            out["task_id"] = self.task_id
        out.update(self.extra)
        return out

    def problems(self) -> list[tuple[str, str]]:
        """Disagreements between fields and modality, as ``(field, message)`` pairs."""
        return _modality_problems(
            self.query_modality, self.query_txt, self.query_img_path,
            "query_modality", "query_txt", "query_img_path",
        ) + (
            [("task_id", f"task {self.task_id} expects query modality "
                         f"{TASKS[self.task_id].query_modality!r}")]
            if self.task_id is not None
            and TASKS[self.task_id].query_modality != self.query_modality
            else []
        )

    def with_changes(self, **changes: Any) -> Query:
        """A copy with some fields replaced."""
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Candidate(_TextFields):
    """An M-BEIR candidate-pool line."""

    did: str
    txt: str | None
    img_path: str | None
    modality: str
    src_content: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)

    TEXT_FIELD: ClassVar[str] = "txt"
    RAW_TEXT_FIELD: ClassVar[str] = "txt_raw"

    @property
    def id(self) -> str:
        """The candidate id (``did``)."""
        return self.did

    @property
    def text(self) -> str | None:
        """The candidate text (``txt``)."""
        return self.txt

    @property
    def image_path(self) -> str | None:
        """The candidate image path (``img_path``), relative to the image root."""
        return self.img_path

    @property
    def dataset_id(self) -> int:
        """The dataset id prefix of ``did``."""
        return parse_id(self.did)[0]

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Candidate:
        """Parse one candidate object (see :meth:`Query.from_dict`)."""
        return cls(
            did=_req_id(obj, "did"),
            txt=_opt_str(obj, "txt"),
            img_path=_opt_str(obj, "img_path"),
            modality=_modality(obj, "modality"),
            src_content=_src_content(obj, "src_content"),
            extra=_extra(obj, _CAND_FIELDS),
        )

    def to_dict(self) -> dict[str, Any]:
        """The M-BEIR JSON object (field order as in the released files, extras last)."""
        out: dict[str, Any] = {
            "txt": self.txt,
            "img_path": self.img_path,
            "modality": self.modality,
            "did": self.did,
            "src_content": self.src_content,
        }
        out.update(self.extra)
        return out

    def problems(self) -> list[tuple[str, str]]:
        """Disagreements between fields and modality, as ``(field, message)`` pairs."""
        return _modality_problems(
            self.modality, self.txt, self.img_path, "modality", "txt", "img_path"
        )

    def with_changes(self, **changes: Any) -> Candidate:
        """A copy with some fields replaced."""
        return replace(self, **changes)


def _modality_problems(
    modality: str, text: str | None, image: str | None, mod_key: str, txt_key: str, img_key: str
) -> list[tuple[str, str]]:
    wants_text = "text" in modality.split(",")
    wants_image = "image" in modality.split(",")
    out = []
    if wants_text and not (text and text.strip()):
        out.append((txt_key, f"{mod_key} is {modality!r} but the text is empty"))
    if wants_image and not image:
        out.append((img_key, f"{mod_key} is {modality!r} but there is no image path"))
    if not wants_image and image:
        out.append((img_key, f"{mod_key} is {modality!r} but an image path is set"))
    return out
