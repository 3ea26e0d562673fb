"""``augret embed``: embed the query files and candidate pools of an M-BEIR directory.

Streams each source file in shards of ``shard_size`` rows (bounded memory), decodes images in
data-loader workers, writes fp16 shards with aligned id files and resumes at the first
incomplete shard. The directory is ``docs/formats.md``'s embedding directory, written through
its owner module :mod:`augret.formats.embeddings`.

Rows that cannot be embedded: with ``on_missing_image="skip"`` (the default) a row whose image
is missing or unreadable, or that has neither text nor image, is left out of the vectors *and*
the ids and listed in the entry's ``skipped.jsonl`` (``entry.json`` counts it); ``"error"``
stops at the first such row; ``"drop"`` embeds the row without its image (mask 0) when it has
text, and records that. If the first 50 rows with an image all fail, the run stops: the image
root is wrong, not a few files.

The engines (:data:`ENGINES`) are peers over :mod:`augret.encode.shards` and write the same
bytes: ``local`` (:mod:`augret.encode.local_engine`: this process holds the encoder) and
``ray`` (:mod:`augret.encode.ray_engine`: a pool of Ray actors, each holding one encoder,
embed whole shards; this process writes them in order). A directory started by one engine
can be resumed by the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from augret.data.mbeir import MBEIRDir
from augret.encode.config import EmbedConfig
from augret.encode.local_engine import embed_local
from augret.encode.ray_engine import embed_with_ray
from augret.encode.shards import EmbedPlan, plan_embedding
from augret.formats.embeddings import META_FILE

__all__ = ["ENGINES", "META_FILE", "EmbedEngine", "embed_dir"]


class EmbedEngine(Protocol):
    """What an engine is: it embeds a plan into an embedding directory and returns its
    ``meta.json``, writing the bytes every other engine writes."""

    def __call__(self, data: MBEIRDir, out: Path, cfg: EmbedConfig, plan: EmbedPlan, *,
                 encoder: Any = None, progress: bool = True) -> dict[str, Any]: ...


#: The engines by ``EmbedConfig.engine`` name.
ENGINES: dict[str, EmbedEngine] = {"local": embed_local, "ray": embed_with_ray}


def embed_dir(data_dir: str | Path, out_dir: str | Path, cfg: EmbedConfig | None = None, *,
              encoder: Any = None, progress: bool = True) -> dict[str, Any]:
    """Embed an M-BEIR directory (raw or enhanced) into an embedding directory.

    Args:
        data_dir: The M-BEIR directory.
        out_dir: The embedding directory (created; resumed when it holds the same config,
            whichever engine wrote it).
        cfg: The config (defaults: :class:`EmbedConfig`); ``cfg.engine`` picks the engine
            from :data:`ENGINES`.
        encoder: An already loaded encoder (else ``cfg.encoder`` is loaded). With the
            ``ray`` engine the workers load ``cfg.encoder`` themselves and this one, which
            must be that encoder, only describes it (dim, precision) to the driver.
        progress: Show a progress bar.

    Returns:
        The ``meta.json`` contents.

    Raises:
        ConfigError: ``out_dir`` holds embeddings of another config (and not ``overwrite``).
        DataNotFoundError: Missing tasks, instructions or images (see the module docstring).
    """
    cfg = cfg or EmbedConfig()
    data = MBEIRDir(data_dir)
    plan = plan_embedding(data, cfg)
    engine = ENGINES[cfg.engine]
    return engine(data, Path(out_dir), cfg, plan, encoder=encoder, progress=progress)
