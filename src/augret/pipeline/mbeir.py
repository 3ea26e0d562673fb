"""``augret mbeir run``: embed → index → retrieve → run files → the M-BEIR table.

Queries come from ``queries_dir`` (an enhanced directory, or the data directory itself),
candidates from ``corpus_dir``; qrels always from ``data_dir``. Output layout::

    OUT/
      run_config.yaml            the resolved RunConfig
      pipeline.json              what each stage did in the last run (ran / reused)
      embeddings/queries/        augret embed of the query files            (dense, hybrid)
      embeddings/pools/          augret embed of the pools                  (dense, hybrid)
      index/dense/<pool>/, union/   FAISS indexes                           (dense, hybrid)
      index/bm25/<pool>/, union/    BM25 indexes                            (bm25, hybrid)
      index/milvus/                 backend milvus: its Milvus Lite database (milvus.db,
                                    unless milvus.uri names a server) and <pool>/, union/;
                                    it replaces index/dense and index/bm25
      runs/{dense,bm25,hybrid}/  <task>_<local|union>.run
      table.md, table.csv, table.json, metrics.json

Every stage directory holds its resolved config and ``stage.json`` with the fingerprint of
its inputs (config hash plus source files' size and mtime, or the upstream stages'
fingerprints); a stage whose fingerprint did not change is reused, so a second run embeds
and indexes nothing, and a new corpus directory re-embeds only the pools (images are not
fingerprinted: after editing images in place, pass ``force``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augret.config import config_hash, config_to_dict, hash_values, write_resolved
from augret.data.jsonl import atomic_writer, read_json, write_json
from augret.data.mbeir import LAYOUT_FILE, MBEIRDir
from augret.errors import ConfigError, DataNotFoundError
from augret.index.config import SearchConfig, search_device
from augret.pipeline.config import RunConfig
from augret.pipeline.stages import StageResult, file_stats, fingerprint, run_stage

__all__ = ["RunReport", "run_mbeir"]

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    """The outcome of :func:`run_mbeir`.

    Attributes:
        out_dir: The output directory.
        stages: What each stage did, in order.
        run_dir: The run files the table was computed from.
        results: ``{(task, pool): EvalResult}``.
        table: The M-BEIR table as markdown.
    """

    out_dir: Path
    stages: dict[str, StageResult]
    run_dir: Path
    results: dict[tuple[str, str], Any]
    table: str

    def status(self) -> dict[str, str]:
        """``{stage: "ran" | "reused"}``."""
        return {name: s.status for name, s in self.stages.items()}


# ---- inputs ----------------------------------------------------------------------------------
def _layout_file(data: MBEIRDir) -> list[Path]:
    return [data.root / LAYOUT_FILE]


def _query_files(data: MBEIRDir, tasks: list[str]) -> list[Path]:
    present = {tf.task.name: tf.queries for tf in data.tasks()}
    inst = data.instructions_file()
    return [present[t] for t in tasks] + ([inst] if inst else []) + _layout_file(data)


def _pool_files(data: MBEIRDir) -> list[Path]:
    """The local pools and the union's files (:meth:`MBEIRDir.union_pool_files`), once each."""
    files = list(data.local_pools().values())
    files += [p for p in data.union_pool_files() if p not in files]
    return files + _layout_file(data)


def _encoder_files(name: str) -> list[Path]:
    """Weight and description files of a checkpoint encoder (none for registered names)."""
    path = Path(name)
    if path.is_file():
        return [path]
    if path.is_dir():
        suffixes = {".pt", ".pth", ".bin", ".safetensors", ".json"}
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in suffixes)
    return []


def _tasks(queries: MBEIRDir, cfg: RunConfig) -> list[str]:
    present = [tf.task.name for tf in queries.tasks()]
    if not present:
        raise DataNotFoundError(f"{queries.root}: no test query file")
    if not cfg.tasks:
        return present
    missing = [t for t in cfg.tasks if t not in present]
    if missing:
        raise DataNotFoundError(f"{queries.root}: no test query file for {missing}")
    return [t for t in present if t in cfg.tasks]


def _clear_runs(directory: Path) -> None:
    for path in directory.glob("*.run"):
        path.unlink()
    (directory / "runs.json").unlink(missing_ok=True)


# ---- the pipeline ------------------------------------------------------------------------------
class _Pipeline:
    def __init__(self, data_dir: Path, queries_dir: Path, corpus_dir: Path, out: Path,
                 cfg: RunConfig, *, force: bool, progress: bool) -> None:
        self.data = MBEIRDir(data_dir)
        self.queries = MBEIRDir(queries_dir)
        self.corpus = MBEIRDir(corpus_dir)
        self.out, self.cfg, self.force, self.progress = out, cfg, force, progress
        self.tasks = _tasks(self.queries, cfg)
        self.stages: dict[str, StageResult] = {}
        self._encoder: Any = None

    # common pieces
    def _embed_config(self, *, queries: bool) -> Any:
        from augret.encode import EmbedConfig

        c = self.cfg
        pools = [] if queries else list(c.pools)
        return EmbedConfig(encoder=str(c.encoder), backbone=c.backbone, queries=queries,
                           pools=pools, tasks=self.tasks if queries else None,
                           instruction=c.instruction, batch_size=c.batch_size,
                           workers=c.workers, device=c.device, precision=c.precision,
                           context_length=c.context_length,
                           on_missing_image=c.on_missing_image, overwrite=True)

    def _embed_key(self) -> dict[str, Any]:
        return {**hash_values(self.cfg, scope="embed"),
                "weights": file_stats(_encoder_files(str(self.cfg.encoder)))}

    def _search_config(self) -> SearchConfig:
        return SearchConfig(k=self.cfg.k, filter_modality=self.cfg.filter_modality,
                            device=search_device(self.cfg.device))

    def encoder(self) -> Any:
        if self._encoder is None:
            from augret.encode import load_encoder

            c = self.cfg
            self._encoder = load_encoder(str(c.encoder), device=c.device, precision=c.precision,
                                         backbone=c.backbone, context_length=c.context_length)
        return self._encoder

    def stage(self, name: str, directory: Path, fp: str, work: Any, **kw: Any) -> str:
        res = run_stage(name, directory, fp, work, force=self.force, **kw)
        self.stages[name] = res
        return fp

    # stages
    def embed(self, which: str) -> str:
        from augret.encode import embed_dir

        queries = which == "queries"
        src = self.queries if queries else self.corpus
        files = _query_files(src, self.tasks) if queries else _pool_files(src)
        cfg = self._embed_config(queries=queries)
        key = self._embed_key()
        inputs = {"data_dir": str(src.root.resolve()), "files": file_stats(files),
                  "tasks": self.tasks if queries else None, "pools": cfg.pools}
        directory = self.out / "embeddings" / which

        def work() -> None:
            embed_dir(src.root, directory, cfg, encoder=self.encoder(),
                      progress=self.progress)

        return self.stage(f"embed_{which}", directory, fingerprint(key, inputs), work,
                          inputs=inputs, config=config_to_dict(cfg))

    def index_dir(self, kind: str) -> Path:
        """The indexes a retriever searches (``index/milvus`` for both with Milvus)."""
        return self.out / "index" / ("milvus" if self.cfg.backend == "milvus" else kind)

    def index_dense(self, pools_fp: str) -> str:
        from augret.index.build import build_indexes

        c = self.cfg
        cfg = c.milvus if c.backend == "milvus" else c.index
        chash = config_hash(cfg)
        directory = self.index_dir("dense")
        inputs = {"embeddings": pools_fp, "pools": c.pools}

        def work() -> None:
            build_indexes(self.out / "embeddings" / "pools", directory, cfg,
                          local="local" in c.pools, union="union" in c.pools,
                          progress=self.progress)

        name = "index_milvus" if c.backend == "milvus" else "index_dense"
        return self.stage(name, directory, fingerprint(chash, inputs), work,
                          inputs=inputs, config=config_to_dict(cfg))

    def index_bm25(self) -> str:
        from augret.index.build import build_indexes

        c = self.cfg
        directory = self.out / "index" / "bm25"
        inputs = {"data_dir": str(self.corpus.root.resolve()),
                  "files": file_stats(_pool_files(self.corpus)), "pools": c.pools}

        def work() -> None:
            build_indexes(self.corpus.root, directory, c.bm25,
                          local="local" in c.pools, union="union" in c.pools,
                          progress=self.progress)

        return self.stage("index_bm25", directory, fingerprint(config_hash(c.bm25), inputs),
                          work, inputs=inputs, config=config_to_dict(c.bm25))

    def search(self, kind: str, queries_fp: str, index_fp: str) -> str:
        from augret.index.runs import search_to_run_dir

        cfg = self._search_config()
        directory = self.out / "runs" / kind
        inputs = {"queries": queries_fp, "index": index_fp, "tasks": self.tasks,
                  "pools": self.cfg.pools}
        source = (self.out / "embeddings" / "queries") if kind == "dense" else self.queries.root

        def work() -> None:
            search_to_run_dir(source, self.index_dir(kind), directory, cfg,
                              pools=self.cfg.pools, tasks=self.tasks, force=True)

        return self.stage(f"search_{kind}", directory,
                          fingerprint(config_hash(cfg), inputs),
                          work, inputs=inputs, config=config_to_dict(cfg), clear=_clear_runs)

    def fuse(self, dense_fp: str, bm25_fp: str) -> str:
        from augret.index.fusion import fuse_run_dirs

        directory = self.out / "runs" / "hybrid"
        inputs = {"dense": dense_fp, "bm25": bm25_fp, "rrf_k": self.cfg.rrf_k}

        def work() -> None:
            fuse_run_dirs([self.out / "runs" / "dense", self.out / "runs" / "bm25"], directory,
                          k=self.cfg.rrf_k)

        return self.stage("fuse", directory, fingerprint(inputs), work, inputs=inputs,
                          config={"rrf_k": self.cfg.rrf_k}, clear=_clear_runs)

    def evaluate(self, runs_fp: str, run_dir: Path) -> tuple[dict[tuple[str, str], Any], str]:
        from augret.evaluate.rundir import evaluate_run_dir
        from augret.evaluate.table import render

        qrels = [p for t in self.tasks if (p := self.data.qrels_file(t)) is not None]
        inputs = {"runs": runs_fp, "qrels": file_stats(qrels), "metrics": self.cfg.metrics}
        results: dict[tuple[str, str], Any] = {}

        def work() -> None:
            results.update(evaluate_run_dir(self.data.root, run_dir,
                                            metrics=self.cfg.metrics or None))
            results_json = {f"{t}/{p}": r.to_dict() for (t, p), r in results.items()}
            for name, text in (("table.md", render(results, "markdown")),
                               ("table.csv", render(results, "csv")),
                               ("table.json", render(results, "json")),
                               ("metrics.json", json.dumps(results_json, indent=2) + "\n")):
                with atomic_writer(self.out / name) as f:
                    f.write(text)

        files = [self.out / n for n in ("table.md", "table.csv", "table.json", "metrics.json")]
        self.stage("evaluate", self.out / "evaluation", fingerprint(inputs), work,
                   inputs=inputs, config={"metrics": self.cfg.metrics}, outputs=files)
        if not results:  # reused: read the saved metrics back
            results = _load_results(self.out / "metrics.json")
        return results, (self.out / "table.md").read_text("utf-8")


def _load_results(path: Path) -> dict[tuple[str, str], Any]:
    from augret.evaluate.metrics import EvalResult

    raw = read_json(path)
    out = {}
    for key, value in raw.items():
        task, _, pool = key.partition("/")
        out[task, pool] = EvalResult(value["num_queries"], value["metrics"], [])
    return out


def run_mbeir(data_dir: str | Path, out_dir: str | Path, cfg: RunConfig, *,
              queries_dir: str | Path | None = None, corpus_dir: str | Path | None = None,
              force: bool = False, progress: bool = True) -> RunReport:
    """Embed (or reuse), index, retrieve and evaluate an M-BEIR directory.

    Args:
        data_dir: The M-BEIR directory (qrels; default source of queries and candidates).
        out_dir: The output directory (see the module docstring).
        cfg: The run config.
        queries_dir: Where the query files come from (e.g. ``augret enhance`` output).
        corpus_dir: Where the candidate pools come from.
        force: Run every stage even when its inputs did not change.
        progress: Show progress bars.

    Returns:
        The report: stage outcomes, the run directory, results and the markdown table.

    Raises:
        DataNotFoundError: Missing directories, tasks or pools.
        ConfigError: An output directory of another kind, or no run file produced.
    """
    out = Path(out_dir)
    if out.resolve() in {Path(d).resolve() for d in (data_dir, queries_dir or data_dir,
                                                        corpus_dir or data_dir)}:
        raise ConfigError("the output directory must differ from the data directories")
    t0 = time.perf_counter()
    p = _Pipeline(Path(data_dir), Path(queries_dir or data_dir), Path(corpus_dir or data_dir),
                  out, cfg, force=force, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    write_resolved(cfg, out, "run_config.yaml")
    log.info("tasks: %s; pools: %s; retriever: %s", ", ".join(p.tasks), ", ".join(cfg.pools),
             cfg.retriever)
    run_fps: dict[str, str] = {}
    dense_index = ""
    if cfg.dense:
        queries_fp = p.embed("queries")
        pools_fp = p.embed("pools")
        dense_index = p.index_dense(pools_fp)
        run_fps["dense"] = p.search("dense", queries_fp, dense_index)
    if cfg.lexical:
        query_inputs = fingerprint(str(p.queries.root.resolve()),
                                   file_stats(_query_files(p.queries, p.tasks)))
        lexical_index = dense_index if cfg.backend == "milvus" else p.index_bm25()
        run_fps["bm25"] = p.search("bm25", query_inputs, lexical_index)
    if cfg.retriever == "hybrid":
        final = p.fuse(run_fps["dense"], run_fps["bm25"])
    else:
        final = run_fps[cfg.retriever]
    run_dir = out / "runs" / cfg.retriever
    if not any(run_dir.glob("*.run")):
        raise ConfigError(f"{run_dir}: no run file was produced (no task found a candidate)")
    results, table = p.evaluate(final, run_dir)
    report = RunReport(out, p.stages, run_dir, results, table)
    write_json(out / "pipeline.json", {
        "stages": {n: s.to_dict() for n, s in p.stages.items()},
        "tasks": p.tasks, "retriever": cfg.retriever, "pools": cfg.pools,
        "run_dir": str(run_dir), "seconds": round(time.perf_counter() - t0, 3),
        "data_dir": str(Path(data_dir).resolve()),
        "queries_dir": str(p.queries.root.resolve()),
        "corpus_dir": str(p.corpus.root.resolve())})
    return report

