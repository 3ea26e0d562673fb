"""Fetch M-BEIR (the Hugging Face dataset ``TIGER-Lab/M-BEIR``) into the layout augret reads.

Which files: per test task its query file, local pool and qrels, plus the instruction file;
on request the union test pool, the union training (and validation) query file with its pool,
and the image archive (``mbeir_images.tar.gz.part-00`` … ``-03``, about 170 GB). Hub paths
follow the repository's layout (``docs/mbeir.md``), so the output directory *is* an M-BEIR
directory.

Where from: the hub through ``huggingface_hub`` (resumable downloads; checksums from the
hub's LFS metadata), or a local directory laid out like the hub repository (``source=``, e.g.
a mounted mirror or a ``git clone``). Any object with the :class:`Source` methods works too.

The image parts are verified (SHA-256 against the hub's LFS metadata or a ``sha256sum``-style
checksum file; verified digests are remembered in ``.augret_download.json``), then streamed as
one archive — no concatenated copy on disk — and extracted safely: absolute paths, ``..``
components, links that leave the directory and special files are refused.

Without network every hub call fails with one :class:`DownloadError` line naming the file
and the ``--source`` way out; ``HF_HUB_OFFLINE=1`` fails before any connection attempt.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import logging
import os
import shutil
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

from augret.data.ids import DATASETS, MBEIR_TEST_TASKS, EvalTask, eval_task
from augret.data.jsonl import atomic_writer, read_json_or_none, write_json
from augret.errors import AugretError, ConfigError, DataNotFoundError

__all__ = [
    "IMAGE_PARTS",
    "REPO_ID",
    "DownloadError",
    "DownloadReport",
    "HubSource",
    "LocalSource",
    "Source",
    "UnsafeArchiveError",
    "concat_parts",
    "download",
    "extract_parts",
    "hub_paths",
    "read_checksum_file",
    "resolve_tasks",
    "sha256_file",
]

log = logging.getLogger(__name__)

REPO_ID = "TIGER-Lab/M-BEIR"
HUB_EXTRA = "download"  # the extra that brings huggingface_hub
IMAGE_PARTS: tuple[str, ...] = tuple(f"mbeir_images.tar.gz.part-{i:02d}" for i in range(4))
INSTRUCTIONS = "instructions/query_instructions.tsv"
UNION_TEST_POOL = "cand_pool/global/mbeir_union_test_cand_pool.jsonl"
TRAIN_FILES = ("query/union_train/mbeir_union_up_train.jsonl",
               "cand_pool/global/mbeir_union_train_cand_pool.jsonl")
VAL_FILES = ("query/union_val/mbeir_union_val.jsonl",
             "cand_pool/global/mbeir_union_val_cand_pool.jsonl")
STATE_FILE = ".augret_download.json"
EXTRACTED_MARKER = ".augret_extracted.json"
IMAGES_DIR = "mbeir_images"


class DownloadError(AugretError):
    """A file could not be fetched, verified or extracted (the message says which and why)."""

    exit_code = 8
    http_status = 502


class UnsafeArchiveError(DownloadError):
    """An archive member would be written outside the target directory, or is a special file."""


# ---- what to fetch -------------------------------------------------------------------------
def resolve_tasks(names: Iterable[str]) -> list[EvalTask]:
    """Test tasks from names: ``all``, a task (``cirr_task7``) or a dataset (``oven``: its tasks).

    Raises:
        ConfigError: An unknown name.
    """
    out: list[EvalTask] = []
    slugs = {d.slug: d for d in DATASETS.values()}
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name == "all":
            picked = list(MBEIR_TEST_TASKS)
        elif name in slugs:
            picked = [t for t in MBEIR_TEST_TASKS if t.dataset.slug == name]
        else:
            try:
                picked = [eval_task(name)]
            except KeyError:
                raise ConfigError(f"unknown M-BEIR task or dataset {raw!r}; use 'all', a dataset "
                                  f"({', '.join(slugs)}) or a task such as cirr_task7") from None
        out += [t for t in picked if t not in out]
    return out


def hub_paths(tasks: Iterable[str | EvalTask] = ("all",), *, local: bool = True,
              union: bool = False, train: bool = False, val: bool = False,
              instructions: bool = True, images: bool = False) -> list[str]:
    """Repository paths of the chosen files (the layout in ``docs/mbeir.md``).

    Args:
        tasks: Test tasks (see :func:`resolve_tasks`); each brings its query file and qrels.
        local: Also each task's local pool (``mscoco_task{0,3}_test`` for MSCOCO).
        union: The union test pool (5.6M candidates, 2.4 GB).
        train: UniIR's up-sampled union training file and the union training pool.
        val: The union validation file and pool.
        instructions: ``instructions/query_instructions.tsv``.
        images: The four image archive parts.
    """
    resolved = [t if isinstance(t, EvalTask) else None for t in tasks]
    names = [t for t in tasks if not isinstance(t, EvalTask)]
    picked = [t for t in resolved if t is not None] + resolve_tasks(names)
    out: list[str] = []
    for t in dict.fromkeys(picked):
        out.append(f"query/test/mbeir_{t.name}_test.jsonl")
        if local:
            out.append(f"cand_pool/local/mbeir_{t.pool}_cand_pool.jsonl")
        out.append(f"qrels/test/mbeir_{t.name}_test_qrels.txt")
    if instructions:
        out.append(INSTRUCTIONS)
    if union:
        out.append(UNION_TEST_POOL)
    if train:
        out += TRAIN_FILES
    if val:
        out += VAL_FILES
    if images:
        out += IMAGE_PARTS
    return list(dict.fromkeys(out))


# ---- sources -------------------------------------------------------------------------------
class Source(Protocol):
    """Where files come from."""

    def describe(self) -> str:
        """One line naming the source (for messages)."""
        ...

    def fetch(self, path: str, dest_root: Path) -> Path:
        """Make ``dest_root / path`` a complete copy of the repository file ``path``."""
        ...

    def checksums(self, paths: Sequence[str]) -> dict[str, str]:
        """Known SHA-256 digests of some of ``paths`` (missing keys: unknown)."""
        ...


class LocalSource:
    """A local directory laid out like the hub repository (a mirror or a ``git clone``).

    A ``SHA256SUMS`` file at its root (``sha256sum`` output) provides checksums.

    Raises:
        DataNotFoundError: ``root`` is not a directory.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataNotFoundError(f"{self.root}: no such source directory")

    def describe(self) -> str:
        return f"local directory {self.root}"

    def fetch(self, path: str, dest_root: Path) -> Path:
        src, dest = self.root / path, dest_root / path
        if not src.is_file():
            raise DownloadError(f"{path}: not in {self.describe()}")
        if dest.is_file() and dest.stat().st_size == src.stat().st_size:
            return dest  # already copied (same size); verification catches a changed file
        dest.parent.mkdir(parents=True, exist_ok=True)
        with src.open("rb") as fin, atomic_writer(dest, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 22)
        return dest

    def checksums(self, paths: Sequence[str]) -> dict[str, str]:
        sums = self.root / "SHA256SUMS"
        known = read_checksum_file(sums) if sums.is_file() else {}
        return {p: known[p] for p in paths if p in known}


def _hub_message(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    first = lines[0].split(". ")[0].rstrip(".") if lines else type(exc).__name__
    return first[:200]


class HubSource:
    """The Hugging Face hub (``huggingface_hub``; resumable, cached, token from the usual env).

    Raises:
        DownloadError: ``HF_HUB_OFFLINE`` is set (no connection is attempted).
        MissingExtraError: ``huggingface_hub`` is not installed.
    """

    def __init__(self, repo_id: str = REPO_ID, *, revision: str | None = None,
                 token: str | None = None) -> None:
        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
            raise DownloadError(f"the Hugging Face hub is offline (HF_HUB_OFFLINE is set), so "
                                f"{repo_id} cannot be fetched; unset it, or pass --source DIR "
                                f"with a local copy of the repository")
        from augret._lazy import require

        self.hub = require("huggingface_hub", HUB_EXTRA)
        try:  # the error classes moved to huggingface_hub.errors in 0.23
            self.errors: Any = importlib.import_module("huggingface_hub.errors")
        except ImportError:  # pragma: no cover - older huggingface_hub
            self.errors = importlib.import_module("huggingface_hub.utils")
        self.repo_id, self.revision, self.token = repo_id, revision, token

    def describe(self) -> str:
        return f"the Hugging Face hub ({self.repo_id})"

    def _fail(self, what: str, exc: BaseException) -> DownloadError:
        local = getattr(self.errors, "LocalEntryNotFoundError", ())  # no network, no cache
        remote = getattr(self.errors, "EntryNotFoundError", ())
        if remote and isinstance(exc, remote) and not (local and isinstance(exc, local)):
            return DownloadError(f"{what}: not in {self.describe()}")
        return DownloadError(f"cannot fetch {what} from {self.describe()}: "
                             f"{_hub_message(exc)} (check the network or token, or pass "
                             f"--source DIR with a local copy)")

    def fetch(self, path: str, dest_root: Path) -> Path:
        try:
            out = self.hub.hf_hub_download(self.repo_id, path, repo_type="dataset",
                                           revision=self.revision, token=self.token,
                                           local_dir=dest_root)
        except Exception as exc:  # every hub/network failure becomes one clear line
            raise self._fail(path, exc) from None
        return Path(out)

    def checksums(self, paths: Sequence[str]) -> dict[str, str]:
        try:
            infos = self.hub.HfApi().get_paths_info(self.repo_id, list(paths),
                                                    repo_type="dataset", revision=self.revision,
                                                    token=self.token)
        except Exception as exc:
            log.warning("no checksums from the hub (%s); files are not verified",
                        _hub_message(exc))
            return {}
        return {i.path: i.lfs.sha256 for i in infos if getattr(i, "lfs", None) is not None}


# ---- checksums -----------------------------------------------------------------------------
def sha256_file(path: str | Path, *, block: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def read_checksum_file(path: str | Path) -> dict[str, str]:
    """``{name: sha256}`` from ``sha256sum`` output (``<hex>  <name>``, ``*`` binary marker ok).

    Names are kept as written and also by base name, so ``part-00`` matches either way.

    Raises:
        DataNotFoundError: The file does not exist.
        DownloadError: A line is not ``<64 hex digits> <name>``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such checksum file")
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) != 64 or not name or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise DownloadError(f"{path}:{number}: expected '<sha256>  <file name>'")
        out[name] = digest.lower()
        out.setdefault(PurePosixPath(name).name, digest.lower())
    return out


class _State:
    """Digests verified earlier, keyed by file name, size and mtime (``.augret_download.json``)."""

    def __init__(self, root: Path) -> None:
        self.path = root / STATE_FILE
        self.data: dict[str, Any] = read_json_or_none(self.path) or {}

    def _stat(self, file: Path) -> list[int]:
        st = file.stat()
        return [st.st_size, st.st_mtime_ns]

    def verified(self, name: str, file: Path, digest: str) -> bool:
        entry = self.data.get(name)
        return bool(entry) and entry["sha256"] == digest and entry["stat"] == self._stat(file)

    def record(self, name: str, file: Path, digest: str) -> None:
        self.data[name] = {"sha256": digest, "stat": self._stat(file)}
        write_json(self.path, self.data, newline=False)


def verify(file: Path, name: str, expected: str, state: _State | None = None) -> None:
    """Check a file's SHA-256.

    Raises:
        DownloadError: The digest differs (the message says to delete and re-fetch).
    """
    expected = expected.lower()
    if state is not None and state.verified(name, file, expected):
        return
    actual = sha256_file(file)
    if actual != expected:
        raise DownloadError(f"checksum mismatch for {name}: expected {expected}, got {actual}; "
                            f"delete {file} and fetch it again")
    if state is not None:
        state.record(name, file, expected)


# ---- archive parts -------------------------------------------------------------------------
class _Chain(io.RawIOBase):
    """The parts read one after the other as one binary stream (no concatenated copy)."""

    def __init__(self, parts: Sequence[Path]) -> None:
        super().__init__()
        self._parts = list(parts)
        self._f: IO[bytes] | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while True:
            if self._f is None:
                if not self._parts:
                    return 0
                self._f = self._parts.pop(0).open("rb")
            n = self._f.readinto(view)  # type: ignore[attr-defined]
            if n:
                return n
            self._f.close()
            self._f = None

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        self._parts = []
        super().close()


def concat_parts(parts: Sequence[str | Path], out: str | Path) -> Path:
    """Concatenate archive parts into one file (atomic). :func:`extract_parts` needs no copy."""
    out = Path(out)
    with atomic_writer(out, "wb") as f:
        for p in parts:
            with Path(p).open("rb") as fin:
                shutil.copyfileobj(fin, f, 1 << 22)
    return out


def _check_member(m: tarfile.TarInfo, dest: Path) -> Path:
    name = m.name
    pure = PurePosixPath(name)
    if name.startswith(("/", "\\")) or pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path; refused")
    if ".." in pure.parts or ".." in Path(name).parts:
        raise UnsafeArchiveError(f"archive member {name!r} contains '..'; refused")
    target = (dest / name).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise UnsafeArchiveError(f"archive member {name!r} leaves the target directory; refused")
    if m.issym() or m.islnk():
        link = PurePosixPath(m.linkname)
        base = target.parent if m.issym() else dest.resolve()
        if link.is_absolute() or ".." in link.parts or \
                not (base / m.linkname).resolve().is_relative_to(dest.resolve()):
            raise UnsafeArchiveError(f"archive member {name!r} links outside the target "
                                     f"({m.linkname!r}); refused")
    elif not (m.isfile() or m.isdir()):
        raise UnsafeArchiveError(f"archive member {name!r} is a special file; refused")
    return target


def extract_parts(parts: Sequence[str | Path], dest: str | Path, *,
                  subdir: str | None = IMAGES_DIR) -> int:
    """Extract a (split) ``.tar.gz`` safely, streaming the parts in order.

    Args:
        parts: The archive's parts in order (one file is fine).
        dest: Target directory.
        subdir: When the archive's first member does not start with this folder, extract
            into ``dest / subdir`` instead, so images always land under ``mbeir_images/``
            (``None``: extract as is).

    Returns:
        Members extracted.

    Raises:
        UnsafeArchiveError: A member has an absolute path or ``..``, links outside the target
            or is a device/FIFO; nothing after it is extracted.
        DownloadError: The archive is corrupt or truncated.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    stream = io.BufferedReader(_Chain([Path(p) for p in parts]), 1 << 20)
    n = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as tar:
            root = None
            for m in tar:
                if root is None:
                    top = PurePosixPath(m.name).parts[:1]
                    root = dest if subdir is None or top == (subdir,) else dest / subdir
                    root.mkdir(parents=True, exist_ok=True)
                _check_member(m, root)
                if hasattr(tarfile, "data_filter"):
                    tar.extract(m, root, filter="data")
                else:  # pragma: no cover - Python < 3.10.12 without extraction filters
                    tar.extract(m, root)
                n += 1
    except UnsafeArchiveError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise DownloadError(f"cannot extract {', '.join(Path(p).name for p in parts)}: "
                            f"{exc}") from None
    finally:
        stream.close()
    return n


# ---- the whole download --------------------------------------------------------------------
@dataclass
class DownloadReport:
    """What :func:`download` did.

    Attributes:
        out_dir: The M-BEIR directory written.
        source: Where files came from.
        files: Repository paths fetched (or, for a dry run, that would be).
        verified: Paths whose SHA-256 was checked.
        unverified: Image parts no checksum was known for.
        extracted: Archive members extracted (0 when skipped or already done).
        dry_run: Nothing was fetched.
    """

    out_dir: Path
    source: str
    files: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    extracted: int = 0
    dry_run: bool = False


def download(out_dir: str | Path, tasks: Iterable[str] = ("all",), *, local: bool = True,
             union: bool = False, train: bool = False, val: bool = False,
             images: bool = False, extract: bool = True, keep_parts: bool = True,
             source: str | Path | Source | None = None, repo_id: str = REPO_ID,
             revision: str | None = None, token: str | None = None,
             checksum_file: str | Path | None = None, dry_run: bool = False) -> DownloadReport:
    """Fetch the chosen M-BEIR files into ``out_dir`` (an M-BEIR directory).

    Args:
        out_dir: Target directory (created). Re-running resumes: complete files are kept,
            verified parts are not hashed again, an extracted archive is not re-extracted.
        tasks: Test tasks or datasets (see :func:`resolve_tasks`).
        local: Each task's local pool.
        union: The union test pool.
        train: The union training file and pool.
        val: The union validation file and pool.
        images: The image archive parts, verified and extracted into ``mbeir_images/``.
        extract: Extract the parts (with ``images``).
        keep_parts: Keep the parts after a successful extraction.
        source: A local directory laid out like the hub repository, or a :class:`Source`;
            default the hub.
        repo_id: The hub dataset.
        revision: A hub revision (branch, tag or commit).
        token: A hub token (default: the usual ``HF_TOKEN`` / login).
        checksum_file: ``sha256sum`` output for the parts (wins over the source's digests).
        dry_run: Only list the files.

    Raises:
        DownloadError: A fetch, checksum or extraction failed (one line, no traceback).
        ConfigError: An unknown task.
    """
    out = Path(out_dir)
    paths = hub_paths(tasks, local=local, union=union, train=train, val=val, images=images)
    if dry_run:
        where = str(source) if source is not None else f"the Hugging Face hub ({repo_id})"
        return DownloadReport(out, where, paths, dry_run=True)
    src: Source
    if source is None:
        src = HubSource(repo_id, revision=revision, token=token)
    elif isinstance(source, (str, Path)):
        src = LocalSource(source)
    else:
        src = source
    report = DownloadReport(out, src.describe())
    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        log.info("fetching %s", path)
        src.fetch(path, out)
        report.files.append(path)
    if images:
        _verify_parts(out, src, checksum_file, report)
        if extract:
            report.extracted = _extract(out, keep_parts)
    log.info("%s: %d files from %s", out, len(report.files), report.source)
    return report


def _verify_parts(out: Path, src: Source, checksum_file: str | Path | None,
                  report: DownloadReport) -> None:
    known = read_checksum_file(checksum_file) if checksum_file is not None else {}
    missing = [p for p in IMAGE_PARTS if p not in known]
    if missing:
        known = {**src.checksums(missing), **known}
    state = _State(out)
    for part in IMAGE_PARTS:
        digest = known.get(part)
        if digest is None:
            log.warning("%s: no checksum known; not verified", part)
            report.unverified.append(part)
            continue
        verify(out / part, part, digest, state)
        report.verified.append(part)


def _extract(out: Path, keep_parts: bool) -> int:
    marker = out / IMAGES_DIR / EXTRACTED_MARKER
    if marker.is_file():
        log.info("%s: images already extracted", out / IMAGES_DIR)
        return 0
    parts = [out / p for p in IMAGE_PARTS]
    log.info("extracting %d parts into %s", len(parts), out / IMAGES_DIR)
    n = extract_parts(parts, out, subdir=IMAGES_DIR)
    with atomic_writer(marker) as f:
        json.dump({"parts": list(IMAGE_PARTS), "members": n}, f)
    if not keep_parts:
        for p in parts:
            p.unlink()
    return n
