"""``enhance``: run an enhancement over an M-BEIR directory on the engine the config names.

The run is plan → generate → assemble (:mod:`augret.enhance.context`); the engine
(:data:`ENGINES`) schedules the phases, the runner sets up the run, links what it did not
touch and writes the report. A failed row keeps its original text, is recorded with its
reason, and is retried on the next run. Counts reconcile per file: generated + cached +
passed_through + failed = total.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from augret.config import config_to_dict, write_resolved
from augret.data.jsonl import read_json, write_json
from augret.data.mbeir import MBEIRDir, write_layout
from augret.enhance.assemble import FileCounts, merge_failures
from augret.enhance.backends.base import Backend
from augret.enhance.backends.reference import SIMULATED_NOTE
from augret.enhance.config import EnhanceConfig
from augret.enhance.context import Engine, open_context
from augret.enhance.files import link_untouched, select_files
from augret.enhance.item import backend_identity, make_backend, resolve_model
from augret.enhance.local_engine import LocalEngine
from augret.enhance.ray_engine import RayEngine
from augret.errors import ConfigError
from augret.progress import progress_bar

__all__ = ["ENGINES", "enhance"]

log = logging.getLogger(__name__)
REPORT_FILE = "enhance_report.json"

#: The engines by their ``engine`` config value.
ENGINES: dict[str, Engine] = {"local": LocalEngine(), "ray": RayEngine()}


def enhance(
    data_dir: str | Path,
    out_dir: str | Path,
    cfg: EnhanceConfig | None = None,
    *,
    backend: Backend | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Enhance an M-BEIR directory into an enhanced M-BEIR directory.

    Args:
        data_dir: Source directory (raw or already enhanced).
        out_dir: Output directory: enhanced files in the same layout, untouched files linked,
            ``augret.json`` pointing at the source images, ``enhance_report.json``,
            ``enhance_failures.jsonl`` and ``enhance_config.yaml``.
        cfg: Run configuration (defaults: the paper's policy, Qwen3-VL-8B, transformers).
        backend: A ready backend (otherwise built from ``cfg``); only for engines that run
            the model in this process.
        progress: Show a rich progress bar.

    Returns:
        The report: per-file counts, totals, tokens/s, model and prompt version.
    """
    cfg = cfg or EnhanceConfig()
    src = MBEIRDir(data_dir)
    out_root = Path(out_dir)
    if out_root.resolve() == src.root.resolve():
        raise ConfigError("the output directory must differ from the data directory")
    engine = ENGINES[cfg.engine]
    if backend is not None and not engine.loads_model:
        raise ConfigError(f"the {engine.name} engine builds a backend in each worker from the "
                          f"config; pass no backend object")
    cfg = resolve_model(cfg, src.root)
    files = select_files(src, cfg.split, cfg.side, cfg.files)
    if not files:
        log.warning("no %s files of split %r matched in %s", cfg.side, cfg.split, src.root)
    own_backend = backend is None
    if backend is None:  # engines whose workers hold the model key with its identity here
        backend = make_backend(cfg) if engine.loads_model else backend_identity(cfg)
    report_path = out_root / REPORT_FILE
    report = read_json(report_path) if report_path.is_file() else {}
    per_file: dict[str, Any] = report.get("files", {})
    started = time.perf_counter()
    run_counts = FileCounts()
    try:
        ctx = open_context(cfg, src, backend, out_root)
    except BaseException:
        if own_backend:
            backend.close()
        raise
    try:
        with progress_bar("description", "bar", "count", "rate", "remaining",
                          transient=False, enabled=progress) as bar:
            run = engine.run(ctx, files, bar)
    finally:
        ctx.close()
        if own_backend:
            backend.close()
    for (path, side), counts in run.files:
        rel = path.relative_to(src.root)
        per_file[str(rel)] = {"side": side, **asdict(counts)}
        run_counts.add(counts)
        log.info("%s: %s", rel, asdict(counts))
    link_untouched(src, out_root, {p.relative_to(src.root) for p, _ in files})
    write_layout(out_root, {"image_root": str(src.image_root.resolve()),
                            "source": str(src.root.resolve())})
    seconds = time.perf_counter() - started
    report = {
        "model": backend.model_id, "revision": backend.revision, "backend": backend.name,
        **({"simulated": SIMULATED_NOTE} if getattr(backend, "simulated", False) else {}),
        "prompt_version": ctx.prompts.id, "mode": cfg.mode, "store": str(ctx.store.path),
        "engine": run.report,
        "files": per_file,
        "last_run": {**asdict(run_counts), "seconds": seconds,
                     "items_per_s": run_counts.total / seconds if seconds else 0.0,
                     "tokens_per_s": run_counts.output_tokens / seconds if seconds else 0.0},
        "config": config_to_dict(cfg),
    }
    write_json(report_path, report, newline=False)
    merge_failures(ctx, {str(p.relative_to(src.root)) for p, _ in files})
    write_resolved(cfg, out_root, "enhance_config.yaml")
    return report
