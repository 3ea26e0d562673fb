"""Where MLLM weights come from: local directories or Hugging Face Hub snapshots, their file
fingerprints (config hashes), and quiet transformers loads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from augret._lazy import require
from augret.errors import AugretError, DataFormatError, DataNotFoundError

__all__ = ["file_fingerprints", "local_dir", "quiet_transformers"]


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' own load reports and progress bars off (augret reports problems)."""
    tf_logging = require("transformers.utils.logging", "train")
    level = tf_logging.get_verbosity()
    bars = tf_logging.is_progress_bar_enabled()
    tf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        tf_logging.set_verbosity(level)
        if bars:
            tf_logging.enable_progress_bar()


def local_dir(source: str, revision: str | None, patterns: list[str], what: str) -> Path:
    """A local directory for ``source``: itself when it is one, else a hub snapshot."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise DataFormatError(f"{what}: not a directory", path=path)
    if source.startswith(("/", "./", "../", "~")) or source.count("/") != 1:
        raise DataNotFoundError(f"{what} {source!r}: no such directory (and not a hub id "
                                "owner/name)")
    hub = require("huggingface_hub", "train")
    try:
        return Path(hub.snapshot_download(source, revision=revision, allow_patterns=patterns))
    except Exception as exc:  # offline, unknown repo, gated, network: one clear message
        raise AugretError(f"could not fetch {what} {source!r} from the Hugging Face Hub "
                          f"({type(exc).__name__}: {exc}); download it and pass the local "
                          "directory") from None


def file_fingerprints(*dirs: Path | None) -> list[dict[str, Any]]:
    """Size and mtime of the weight and config files of local directories (config hashes:
    a retrained checkpoint at the same path changes them)."""
    out = []
    for d in dirs:
        if d is None or not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"):
                st = p.stat()
                out.append({"file": str(p.resolve()), "size": st.st_size,
                            "mtime_ns": st.st_mtime_ns})
    return out
