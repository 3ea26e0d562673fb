"""Build index directories of any backend: one pool, or every local pool plus the union."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from augret.errors import ConfigError
from augret.index.backends import backend_for
from augret.index.config import BM25Config, IndexConfig, MilvusConfig

__all__ = ["build_indexes"]


def build_indexes(source: str | Path, out: str | Path,
                  cfg: IndexConfig | BM25Config | MilvusConfig | None = None, *,
                  pool: str | None = None,
                  local: bool = True, union: bool = True, force: bool = False,
                  progress: bool = True, **options: Any) -> dict[str, Path]:
    """Build the index directories of a source's pools with the backend of ``cfg``.

    Each pool's index is left as is when it is up to date (same inputs and config) unless
    ``force``.

    Args:
        source: What the backend indexes: an embedding directory (dense backends), an M-BEIR
            directory (BM25).
        out: With ``pool``: that pool's index directory. Without: a root that gets
            ``<pool>/`` for every local pool and ``union/`` for the union.
        cfg: The build config; its class picks the backend (:class:`IndexConfig`: FAISS,
            the default; :class:`BM25Config`: BM25; :class:`MilvusConfig`: one Milvus
            collection for all the pools, its Lite database in ``out`` unless the config
            names a URI; see :mod:`augret.index.backends`).
        pool: Build only this pool (a local pool name, or ``union``).
        local: Without ``pool``: build every local pool.
        union: Without ``pool``: build the union when the source has one.
        force: Rebuild even where an index is up to date.
        progress: Show progress bars.
        **options: Options of the backend (FAISS and Milvus: ``modalities`` — store
            candidate modalities for the filter: ``True`` requires the pool files, ``None``
            when they are found, ``False`` never — and ``data_dir``, the M-BEIR directory of
            the pool files when the embedding directory's is not at hand).

    Returns:
        The index directories by pool name.

    Raises:
        ConfigError: An option the backend does not take.
        DataNotFoundError: No such pool, or no pool at all.
        DataFormatError: See the backend (e.g. :func:`augret.index.dense.build_index`).
    """
    cfg = cfg if cfg is not None else IndexConfig()
    backend = backend_for(cfg)
    unknown = sorted(set(options) - set(backend.options))
    if unknown:
        raise ConfigError(f"the {backend.name} index backend takes no option "
                          f"{', '.join(unknown)}")
    out = Path(out)
    targets = ({pool: out} if pool is not None else
               {name: out / name for name in backend.pools(source, local=local, union=union)})
    if backend.build_pools is not None:
        backend.build_pools(source, targets, root=out, cfg=cfg, force=force,
                            progress=progress, **options)
        return targets
    for name, directory in targets.items():
        backend.build(source, directory, pool=name, cfg=cfg, force=force, progress=progress,
                      **options)
    return targets
