"""JSON and JSONL files: line-streamed reading, whole-object reading and atomic writing, with
errors that name the file (and line)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from augret.errors import DataFormatError, DataNotFoundError

__all__ = [
    "atomic_writer",
    "iter_jsonl",
    "iter_lines",
    "parse_json",
    "read_json",
    "read_json_or_none",
    "write_json",
    "write_jsonl",
]

ErrorHandler = Callable[[DataFormatError], None]
_UMASK = os.umask(0)
os.umask(_UMASK)


def _open_binary(path: Path) -> IO[bytes]:
    if not path.exists():
        raise DataNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise DataNotFoundError(f"{path}: is a directory, expected a file")
    return path.open("rb")


def iter_lines(
    path: str | Path, *, on_error: ErrorHandler | None = None, allow_empty: bool = False
) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank line, decoding UTF-8 strictly.

    Memory stays bounded by the longest line, whatever the file size.

    Args:
        path: The file.
        on_error: Called with the error of a bad line, which is then skipped. When ``None``
            the first bad line raises.
        allow_empty: Accept a file with no non-blank line.

    Raises:
        DataNotFoundError: The file does not exist.
        DataFormatError: A line is not UTF-8, or the file is empty (unless allowed).
    """
    path = Path(path)
    seen = False
    with _open_binary(path) as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                err = DataFormatError(
                    f"invalid UTF-8 byte 0x{raw[exc.start]:02x} at column {exc.start + 1}",
                    path=path,
                    line=number,
                )
                if on_error is None:
                    raise err from None
                on_error(err)
                continue
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            if not text.strip():
                continue
            seen = True
            yield number, text
    if not seen and not allow_empty:
        err = DataFormatError("file is empty", path=path)
        if on_error is None:
            raise err
        on_error(err)


def iter_jsonl(
    path: str | Path, *, on_error: ErrorHandler | None = None, allow_empty: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each JSON object line of a JSONL file.

    Args:
        path: The file.
        on_error: As in :func:`iter_lines`; also receives JSON and non-object errors.
        allow_empty: Accept a file with no records.

    Raises:
        DataFormatError: A line is not valid JSON or not a JSON object (unless ``on_error``).
    """
    for number, text in iter_lines(path, on_error=on_error, allow_empty=allow_empty):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            err = DataFormatError(f"invalid JSON: {exc.msg} at column {exc.colno}", path=path,
                                  line=number)
            if on_error is None:
                raise err from None
            on_error(err)
            continue
        if not isinstance(obj, dict):
            err = DataFormatError(
                f"expected a JSON object, got {type(obj).__name__}", path=path, line=number
            )
            if on_error is None:
                raise err
            on_error(err)
            continue
        yield number, obj


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and rename it into place on success.

    A crash or exception leaves any previous ``path`` untouched and no partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Atomically write ``rows`` as JSONL (UTF-8, one object per line). Returns the count."""
    n = 0
    with atomic_writer(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_json(path: str | Path, *, what: str = "") -> dict[str, Any]:
    """A JSON file holding one object (a ``meta.json``, ``entry.json``, layout file...).

    Args:
        path: The file.
        what: What the file is, for the not-found message (e.g. ``"an embedding
            directory"``).

    Raises:
        DataNotFoundError: The file is absent; the message names it.
        DataFormatError: It is not UTF-8, not JSON, or not a JSON object; names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file" + (f" (not {what})" if what else ""))
    return parse_json(path.read_bytes(), path=path)


def parse_json(data: bytes | str, *, path: str | Path) -> dict[str, Any]:
    """Parse the contents of a JSON-object file (see :func:`read_json`).

    Raises:
        DataFormatError: Not UTF-8, not JSON, or not a JSON object; names ``path``.
    """
    try:
        obj = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"not UTF-8: {exc}", path=path) from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"invalid JSON: {exc}", path=path) from None
    if not isinstance(obj, dict):
        raise DataFormatError(f"expected a JSON object, got {type(obj).__name__}", path=path)
    return obj


def read_json_or_none(path: str | Path) -> dict[str, Any] | None:
    """:func:`read_json`, or ``None`` when the file is absent or unreadable (caches and skip
    records, where a broken file only means the work is done again)."""
    try:
        return read_json(path)
    except (DataNotFoundError, DataFormatError, OSError):
        return None


def write_json(path: str | Path, obj: Any, *, sort_keys: bool = False,
               ensure_ascii: bool = True, default: Callable[[Any], Any] | None = None,
               newline: bool = True) -> None:
    """Write ``obj`` as indented JSON atomically (see :func:`atomic_writer`).

    Args:
        path: The file.
        obj: A JSON-able value.
        sort_keys: Sort object keys.
        ensure_ascii: Escape non-ASCII characters.
        default: Called for values JSON cannot encode (e.g. ``str``).
        newline: End the file with a newline.
    """
    text = json.dumps(obj, indent=2, sort_keys=sort_keys, ensure_ascii=ensure_ascii,
                      default=default)
    with atomic_writer(path) as f:
        f.write(text + "\n" if newline else text)
