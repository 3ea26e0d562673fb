"""Users' own collections: a folder of images or a JSONL/CSV of items, as M-BEIR candidates.

Every item becomes a :class:`~augret.data.records.Candidate` with an M-BEIR style id
``"<dataset_id>:<n>"`` (so UniIR's integer hashing works). Ids that the source does not give
are generated from a content hash of the item's stable key, so importing the same collection
twice gives the same ids:

* key: ``"img:<image path>"`` (relative to the folder / the table's folder, posix form) when
  the item has an image, else ``"txt:<normalised text>"``; ``"id:<id>"`` for a given id that
  is not of the ``"d:n"`` form (the original is kept in ``src_content`` as ``{"id": ...}``);
* ``n = int(sha256(key)[:8]) % 9_999_999 + 1``; on a collision (rare for small
  collections, about n²/2e7 for n items) the key is re-hashed with a counter
  (``key + "\\x00" + k``), first come first served in the source order, and logged.

:func:`import_collection` writes an M-BEIR layout directory that :class:`MBEIRDir` reads.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.ids import DATASET_CAN_NUM_UPPER_BOUND, UNION_POOL_ORDER, parse_id
from augret.data.jsonl import atomic_writer, iter_jsonl, read_json_or_none, write_json
from augret.data.mbeir import read_layout, write_layout
from augret.data.records import Candidate, modality_of
from augret.data.text import format_string
from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.progress import track

__all__ = [
    "ID_SPACE",
    "IMAGE_EXTENSIONS",
    "MANIFEST_FILE",
    "USER_DATASET_ID",
    "IdAllocator",
    "ImportResult",
    "ImportStats",
    "import_collection",
    "iter_folder",
    "iter_image_files",
    "iter_table",
    "pool_path",
    "stable_number",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}
)
USER_DATASET_ID = 100
ID_SPACE = 9_999_999
MANIFEST_FILE = "collection.json"
TABLE_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_MAX_DATASET_ID = 10**6


def stable_number(key: str) -> int:
    """The id number of a stable key: ``sha256(key) % 9_999_999 + 1`` (in 1..9_999_999)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % ID_SPACE + 1


@dataclass
class ImportStats:
    """Counts of one import."""

    items: int = 0
    modalities: dict[str, int] = field(default_factory=dict)
    ids_generated: int = 0
    ids_mapped: int = 0
    ids_given: int = 0
    collisions: int = 0
    sidecar_captions: int = 0

    def count(self, cand: Candidate) -> None:
        self.items += 1
        self.modalities[cand.modality] = self.modalities.get(cand.modality, 0) + 1


class IdAllocator:
    """Hands out distinct ``"<dataset_id>:<n>"`` ids from stable keys (10 MB of bookkeeping).

    Args:
        dataset_id: The dataset id prefix of generated ids.
    """

    def __init__(self, dataset_id: int = USER_DATASET_ID) -> None:
        self.dataset_id = dataset_id
        self._used = bytearray(ID_SPACE + 1)
        self._count = 0
        self.collisions = 0

    def reserve(self, n: int) -> None:
        """Mark a number given verbatim by the source as taken."""
        if not self._used[n]:
            self._used[n] = 1
            self._count += 1

    def allocate(self, key: str) -> str:
        """The id of ``key``; a taken number is re-hashed deterministically (and logged).

        Raises:
            ConfigError: All 9,999,999 numbers of the dataset id are taken.
        """
        if self._count >= ID_SPACE:
            raise ConfigError(f"dataset id {self.dataset_id} has no free id left; split the "
                              f"collection or use another --dataset-id")
        n = stable_number(key)
        k = 0
        while self._used[n]:
            k += 1
            n = stable_number(f"{key}\x00{k}")
        if k:
            self.collisions += 1
            log.debug("id collision for %r resolved after %d re-hash(es): %d:%d", key, k,
                      self.dataset_id, n)
        self._used[n] = 1
        self._count += 1
        return f"{self.dataset_id}:{n}"


def _verbatim(value: str) -> tuple[int, int] | None:
    """``(d, n)`` if ``value`` is an M-BEIR id UniIR can hash, else ``None``."""
    if not value.isascii():  # parse_id's isdigit() accepts "²", which int() rejects
        return None
    try:
        d, n = parse_id(value)
    except DataFormatError:
        return None
    return (d, n) if 0 < n < DATASET_CAN_NUM_UPPER_BOUND and d < _MAX_DATASET_ID else None


# ---- folders -----------------------------------------------------------------------------

def iter_image_files(folder: str | Path) -> Iterator[Path]:
    """Image files under ``folder``, recursively, in a stable sorted order.

    Extensions (case-insensitive): jpg, jpeg, png, gif, bmp, tif, tiff, webp. Hidden files
    and folders (names starting with ``.``) are skipped; symbolic links to folders are not
    followed.
    """
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                yield Path(dirpath) / name


def _read_sidecar(path: Path) -> str | None:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"caption file is not UTF-8 (byte {exc.start})", path=path) from None
    return format_string(" ".join(text.split())) or None


def iter_folder(
    folder: str | Path,
    *,
    captions: str = "sidecar",
    dataset_id: int = USER_DATASET_ID,
    stats: ImportStats | None = None,
) -> Iterator[Candidate]:
    """Stream a folder of images as candidates (``img_path`` relative to ``folder``).

    Args:
        folder: The folder (searched recursively).
        captions: ``"sidecar"``: ``foo.jpg`` gets the text of ``foo.txt`` beside it when
            present (modality ``image,text``); ``"none"``: images only.
        dataset_id: Dataset id of the generated ids.
        stats: Filled with counts when given.

    Raises:
        DataNotFoundError: ``folder`` is not a directory.
        DataFormatError: A caption file is not UTF-8.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder}: no such directory")
    if captions not in ("sidecar", "none"):
        raise ConfigError(f"captions must be 'sidecar' or 'none', got {captions!r}")
    stats = stats if stats is not None else ImportStats()
    ids = IdAllocator(dataset_id)
    names: tuple[Path, set[str]] | None = None
    for path in iter_image_files(folder):
        rel = path.relative_to(folder).as_posix()
        text = None
        if captions == "sidecar":
            if names is None or names[0] != path.parent:
                names = (path.parent, set(os.listdir(path.parent)))
            side = path.stem + ".txt"
            if side in names[1]:
                text = _read_sidecar(path.parent / side)
                stats.sidecar_captions += text is not None
        cand = Candidate(did=ids.allocate(f"img:{rel}"), txt=text, img_path=rel,
                         modality=modality_of(text, rel))
        stats.ids_generated += 1
        stats.count(cand)
        yield cand
    stats.collisions += ids.collisions


# ---- tables ------------------------------------------------------------------------------

def _table_kind(path: Path) -> str:
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"{path}: unsupported file type {path.suffix!r}; expected a folder "
                          f"of images or one of {sorted(TABLE_SUFFIXES)}")
    return kind


def _rows(path: Path, kind: str, columns: tuple[str, str, str]) -> Iterator[tuple[int, dict]]:
    """``(line, row)`` of a JSONL or CSV/TSV file (empty CSV cells are ``None``)."""
    if kind == "jsonl":
        yield from iter_jsonl(path)
        return
    with path.open("r", encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t" if kind == "tsv" else ",")
        try:
            header = reader.fieldnames or []
            if columns[1] not in header and columns[2] not in header:
                raise ConfigError(f"{path}: no text column {columns[1]!r} and no image column "
                                  f"{columns[2]!r}; the header is {header}")
            for row in reader:
                yield reader.line_num, {k: (v if v != "" else None) for k, v in row.items()}
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"invalid UTF-8 byte 0x{exc.object[exc.start]:02x}", path=path,
                                  line=reader.line_num + 1) from None
        except csv.Error as exc:
            raise DataFormatError(f"bad CSV: {exc}", path=path, line=reader.line_num) from None


def _str_value(row: dict, col: str, path: Path, line: int, *, allow_int: bool = False
               ) -> str | None:
    value = row.get(col)
    if value is None or isinstance(value, str):
        return value if value is None or value.strip() else None
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DataFormatError(f"expected a string, got {type(value).__name__}", path=path, line=line,
                          field=col)


def _image_ref(value: str, bases: list[Path], path: Path, line: int, col: str) -> str:
    """The ``img_path`` of a table's image: found under the first of ``bases`` that holds it
    (an absolute ``value`` is itself), relative to ``bases[0]`` (the image root) when inside
    it, else absolute."""
    tried = [Path(os.path.abspath(b / value)) for b in bases]  # an absolute value stays itself
    full = next((p for p in tried if p.is_file()), None)
    if full is None:
        where = (f"{value} is absolute" if Path(value).is_absolute() else
                 "tried " + ", ".join(str(os.path.abspath(b)) for b in bases))
        raise DataFormatError(f"image file not found: {value} ({where})", path=path, line=line,
                              field=col)
    try:
        return full.relative_to(os.path.abspath(bases[0])).as_posix()
    except ValueError:
        return full.as_posix()


def _reserve_given_ids(path: Path, kind: str, columns: tuple[str, str, str],
                       ids: IdAllocator) -> None:
    """Pass 1: given ids must be unique; verbatim ``d:n`` ids of our dataset are reserved."""
    id_col = columns[0]
    hashes, lines = array("q"), array("q")
    for line, row in _rows(path, kind, columns):
        value = _str_value(row, id_col, path, line, allow_int=True)
        if value is None:
            continue
        digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        hashes.append(int.from_bytes(digest, "big", signed=True))
        lines.append(line)
        parsed = _verbatim(value)
        if parsed is not None and parsed[0] == ids.dataset_id:
            ids.reserve(parsed[1])
    if not hashes:
        return
    keys, at = np.frombuffer(hashes, np.int64), np.frombuffer(lines, np.int64)
    order = np.argsort(keys, kind="stable")
    dup = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    if len(dup):
        first, again = at[order[dup[0]]], at[order[dup[0] + 1]]
        raise DataFormatError(f"duplicate id (first on line {first}); {len(dup)} duplicate(s) "
                              f"in all", path=path, line=int(again), field=id_col)


def iter_table(
    path: str | Path,
    *,
    text_column: str = "text",
    image_column: str = "image",
    id_column: str = "id",
    dataset_id: int = USER_DATASET_ID,
    image_root: str | Path | None = None,
    stats: ImportStats | None = None,
) -> Iterator[Candidate]:
    """Stream a JSONL, CSV or TSV file of items as candidates.

    Text goes through :func:`format_string`; an image path is absolute, or relative to
    ``image_root`` when given (else, or when not found there, to the file's folder);
    ``img_path`` is kept relative to the image root (default: the file's folder) when the
    image is inside it.
    An id of the ``"d:n"`` form is kept; any other id is mapped to a generated one and kept
    in ``src_content`` (``{"id": original}``); items without an id get a generated one.

    Args:
        path: The file (``.jsonl``/``.ndjson``, ``.csv``, ``.tsv``).
        text_column: Key/column of the text.
        image_column: Key/column of the image path.
        id_column: Key/column of the id.
        dataset_id: Dataset id of generated ids.
        image_root: The folder image paths are relative to (default: the file's folder).
        stats: Filled with counts when given.

    Raises:
        DataFormatError: A row has neither text nor image, a wrong type, a missing image
            file (the message names the folders tried) or a duplicate id; the message names
            file, line and field.
        ConfigError: The file type is unsupported, or a CSV has neither column.
        DataNotFoundError: The file or ``image_root`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file")
    bases = [path.parent]
    if image_root is not None:
        if not Path(image_root).is_dir():
            raise DataNotFoundError(f"image root {image_root}: no such directory")
        if Path(os.path.abspath(image_root)) != Path(os.path.abspath(path.parent)):
            bases.insert(0, Path(image_root))
    kind = _table_kind(path)
    columns = (id_column, text_column, image_column)
    stats = stats if stats is not None else ImportStats()
    ids = IdAllocator(dataset_id)
    _reserve_given_ids(path, kind, columns, ids)
    warned = False
    for line, row in _rows(path, kind, columns):
        given = _str_value(row, id_column, path, line, allow_int=True)
        raw_text = _str_value(row, text_column, path, line)
        image = _str_value(row, image_column, path, line)
        text = format_string(raw_text) or None
        if text is None and image is None:
            raise DataFormatError(f"item has neither text ({text_column!r}) nor image "
                                  f"({image_column!r})", path=path, line=line)
        img_path = _image_ref(image, bases, path, line, image_column) if image else None
        src = None
        if given is not None and (parsed := _verbatim(given)) is not None:
            did = f"{parsed[0]}:{parsed[1]}"
            stats.ids_given += 1
            if parsed[0] < 10 and not warned:
                warned = True
                log.warning("%s:%d: id %r uses M-BEIR dataset id %d; it may clash with "
                            "M-BEIR pools", path, line, given, parsed[0])
        elif given is not None:
            did = ids.allocate(f"id:{given}")
            src = json.dumps({"id": given}, ensure_ascii=False)
            stats.ids_mapped += 1
        else:
            did = ids.allocate(f"img:{img_path}" if img_path else f"txt:{text}")
            stats.ids_generated += 1
        cand = Candidate(did=did, txt=text, img_path=img_path,
                         modality=modality_of(text, img_path), src_content=src)
        stats.count(cand)
        yield cand
    stats.collisions += ids.collisions


# ---- import ------------------------------------------------------------------------------

def pool_path(out_dir: str | Path, name: str) -> Path:
    """Where :func:`import_collection` writes the pool of collection ``name``."""
    return Path(out_dir) / "cand_pool" / "local" / f"mbeir_{name}_cand_pool.jsonl"


@dataclass
class ImportResult:
    """What :func:`import_collection` wrote."""

    name: str
    source: str
    kind: str
    out_dir: str
    pool_file: str
    image_root: str
    stats: ImportStats

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _check_options(name: str, captions: str, dataset_id: int) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"collection name {name!r}: use letters, digits, '_', '-' or '.'")
    if name in UNION_POOL_ORDER or name.startswith("union"):
        raise ConfigError(f"collection name {name!r} is reserved for M-BEIR's pools")
    if captions not in ("sidecar", "none"):
        raise ConfigError(f"captions must be 'sidecar' or 'none', got {captions!r}")
    if not 0 <= dataset_id < _MAX_DATASET_ID:
        raise ConfigError(f"dataset id must be in 0..{_MAX_DATASET_ID - 1}, got {dataset_id}")


def _write_layout(out_dir: Path, image_root: Path) -> None:
    data = read_layout(out_dir)
    old = data.get("image_root")
    if old and (out_dir / str(old)).resolve() != image_root:
        raise ConfigError(f"{out_dir} already holds a collection with image root {old}; "
                          f"import {image_root} into another directory")
    data["image_root"] = str(image_root)
    write_layout(out_dir, data)


def _write_manifest(out_dir: Path, result: ImportResult, extra: dict[str, Any]) -> None:
    path = out_dir / MANIFEST_FILE
    data: dict[str, Any] = {"collections": {}}
    if path.is_file():
        data = read_json_or_none(path) or {}
        if not data:
            log.warning("%s is unreadable; rewriting it", path)
        data.setdefault("collections", {})
    for other, info in data["collections"].items():
        if other != result.name and info.get("id_scheme", {}).get("dataset_id") == \
                extra["id_scheme"]["dataset_id"]:
            log.warning("collections %r and %r in %s share dataset id %d: the same item gets "
                        "the same id in both pools (use another dataset id to keep them "
                        "disjoint)", other, result.name, out_dir, extra["id_scheme"]["dataset_id"])
    entry = result.to_dict()
    entry["pool_file"] = Path(result.pool_file).relative_to(out_dir).as_posix()
    entry.pop("out_dir")
    entry.update(extra)
    data["collections"][result.name] = entry
    write_json(path, data, ensure_ascii=False)


def import_collection(
    source: str | Path,
    out_dir: str | Path,
    *,
    name: str = "mycollection",
    captions: str = "sidecar",
    text_column: str = "text",
    image_column: str = "image",
    id_column: str = "id",
    dataset_id: int = USER_DATASET_ID,
    image_root: str | Path | None = None,
) -> ImportResult:
    """Turn a folder of images or a JSONL/CSV/TSV of items into an M-BEIR layout directory.

    Writes (atomically, streaming the items) ``cand_pool/local/mbeir_<name>_cand_pool.jsonl``,
    ``augret.json`` (``{"image_root": <absolute source folder>}``, so ``img_path`` values stay
    relative to the source and :class:`MBEIRDir` resolves them) and ``collection.json``
    (``{"collections": {name: {source, kind, counts, id scheme, ...}}}``).

    Args:
        source: A folder of images, or a ``.jsonl``/``.ndjson``/``.csv``/``.tsv`` file.
        out_dir: The directory to write (created if needed).
        name: The collection (pool) name.
        captions: Folders only: ``"sidecar"`` (``foo.txt`` captions ``foo.jpg``) or ``"none"``.
        text_column: Tables only: key/column of the text.
        image_column: Tables only: key/column of the image path.
        id_column: Tables only: key/column of the id.
        dataset_id: Dataset id of generated ids (default 100, outside M-BEIR's 0-9).
        image_root: Tables only: the folder the table's image paths are relative to
            (default: the table's folder; paths not found there are looked up beside the
            table).

    Returns:
        What was written, with counts.

    Raises:
        DataNotFoundError: ``source`` does not exist.
        DataFormatError: A bad item (file, line and field named); nothing is written.
        ConfigError: A bad option, an empty collection, or ``out_dir`` already holds a
            collection with another image root.
    """
    source = Path(source)
    out = Path(out_dir)
    _check_options(name, captions, dataset_id)
    if not source.exists():
        raise DataNotFoundError(f"{source}: no such file or directory")
    stats = ImportStats()
    if source.is_dir():
        if image_root is not None:
            raise ConfigError("--image-root applies to tables; a folder of images is its own "
                              "image root")
        kind, root = "folder", source.resolve()
        items = iter_folder(source, captions=captions, dataset_id=dataset_id, stats=stats)
    else:
        kind = _table_kind(source)
        root = Path(image_root).resolve() if image_root is not None else source.parent.resolve()
        items = iter_table(source, text_column=text_column, image_column=image_column,
                           id_column=id_column, dataset_id=dataset_id, image_root=image_root,
                           stats=stats)
    target = pool_path(out, name)
    log.info("importing %s (%s) into %s", source, kind, target)
    with atomic_writer(target) as f, track(f"importing {source.name}", None, "spinner",
                                            "description", "items", "elapsed") as tick:
        for cand in items:
            f.write(json.dumps(cand.to_dict(), ensure_ascii=False) + "\n")
            if not stats.items % 1000:
                tick(1000)
        if stats.items == 0:
            raise ConfigError(f"{source}: no items found" + (
                f" (image extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
                if kind == "folder" else ""))
    if stats.collisions:
        log.info("%s: %d id collision(s) resolved by re-hashing", name, stats.collisions)
    _write_layout(out, root)
    result = ImportResult(name=name, source=str(source.resolve()), kind=kind,
                          out_dir=str(out), pool_file=str(target), image_root=str(root),
                          stats=stats)
    extra: dict[str, Any] = {
        "id_scheme": {
            "dataset_id": dataset_id,
            "n": "int(sha256(key)[:8]) % 9999999 + 1, re-hashed as key + '\\x00' + k on a "
                 "collision (first come first served in source order)",
            "key": "'img:<img_path>' if the item has an image, else 'txt:<text>'; "
                   "'id:<id>' for a given id not of the 'd:n' form",
        },
    }
    if kind == "folder":
        extra["captions"] = captions
    else:
        extra["columns"] = {"id": id_column, "text": text_column, "image": image_column}
    _write_manifest(out, result, extra)
    log.info("%s: %d items written to %s (%s)", name, stats.items, target,
             stats.modalities)
    return result
