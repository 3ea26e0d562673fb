"""``augret plan``: what an experiment will cost, from the data alone (no model is loaded).

For the enhancement stages the conditions need (:meth:`ExperimentConfig.enhancements`): rows
per split and side, rows that pass through, rows that need generation, distinct generation
keys after de-duplication within and across stages (see :mod:`augret.experiment.scan`),
images missing on disk, and expected output tokens (mean tokens per route; the budgets give
an upper bound). Then the embeddings to compute (queries and pool rows per encoder and data
view), the memory of each condition's exact index per pool (``flat``: float32 in RAM;
``flat16``: float16 mapped from disk, one block in RAM, or resident on the GPUs) with
warnings where it exceeds the machine, training samples, and GPU-hours at the configured
per-GPU throughputs.

Example::

    from augret.experiment.plan import plan

    p = plan("configs/mbeir-paper.yaml", data_dir="/data/M-BEIR")
    p.print()
    p.write_json("runs/mbeir-paper/plan.json")
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from augret.config import config_to_dict, load_config
from augret.data.ids import UNION_POOL_ORDER
from augret.data.jsonl import atomic_writer
from augret.data.mbeir import UNION, MBEIRDir, TaskFiles
from augret.enhance.policy import Policy
from augret.errors import ConfigError
from augret.experiment.config import ExperimentConfig
from augret.experiment.files import stage_files
from augret.experiment.scan import KeyScanner, StageScan

__all__ = ["Plan", "count_rows", "plan", "stage_files"]

log = logging.getLogger(__name__)

_HOUR = 3600.0


@dataclass
class Plan:
    """The plan of an experiment (all counts exact; hours and bytes are estimates).

    Attributes:
        config: The resolved experiment config.
        data_dir: The scanned data directory.
        mode: ``bytes`` (images hashed) or ``fast`` (images identified by path).
        stages: One scan per enhancement stage.
        routes: Per route over all stages: rows, distinct keys, mean and budget tokens,
            expected and maximal output tokens, GPU-hours.
        enhancement: Totals of the enhancement stages.
        embedding: Embedding sets and item counts.
        index: Exact-index memory per encoder, corpus view and pool (float32 and float16),
            the conditions that search each, and the machine compared against.
        training: Training runs, samples and GPU-hours.
        gpu_hours: Per stage kind and total; ``wall_hours`` divides by the GPUs.
        notes: Things the reader must know (absent files, assumptions).
        warnings: What will not fit (index memory beyond the machine's).
    """

    config: dict[str, Any]
    data_dir: str
    mode: str
    stages: list[StageScan] = field(default_factory=list)
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    enhancement: dict[str, Any] = field(default_factory=dict)
    embedding: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    gpu_hours: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` atomically; returns the path."""
        path = Path(path)
        with atomic_writer(path) as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")
        return path

    def print(self, console: Any = None) -> None:
        """Print the plan as rich tables (to ``console``, default stdout)."""
        from augret.experiment.plan_render import render_plan

        render_plan(self, console)


def count_rows(path: Path) -> int:
    """Non-blank lines of a JSONL file (records), read in binary blocks."""
    n = 0
    with Path(path).open("rb") as f:
        for line in f:
            n += bool(line.strip())
    return n


def _resolve(path: str, bases: list[Path]) -> Path | None:
    p = Path(path)
    if p.is_absolute():
        return p if p.is_file() else None
    for base in [Path.cwd(), *bases]:
        if (base / p).is_file():
            return base / p
    return None


def _training_config(cfg: ExperimentConfig, config_path: Path | None, notes: list[str],
                     recipe: str) -> Any:
    from augret.train.config import TrainConfig

    bases = [config_path.parent, config_path.parent.parent] if config_path else []
    found = _resolve(recipe, bases) if recipe else None
    if recipe and found is None:
        notes.append(f"training recipe {recipe} not found; TrainConfig defaults "
                     "(UniIR's recipe) assumed")
    return load_config(TrainConfig, found, cfg.training.overrides)


class _Rows:
    """Row counts of files, counted once."""

    def __init__(self) -> None:
        self.known: dict[Path, int] = {}

    def __call__(self, path: Path) -> int:
        key = path.resolve()
        if key not in self.known:
            self.known[key] = count_rows(path)
        return self.known[key]


def plan(cfg: ExperimentConfig | str | Path, *, data_dir: str | Path | None = None,
         fast: bool = False, config_path: str | Path | None = None) -> Plan:
    """Plan an experiment from its data.

    Args:
        cfg: The config, or a YAML file to load it from.
        data_dir: Overrides ``cfg.data_dir``.
        fast: Identify images by path (no image bytes read); missing images are still
            reported.
        config_path: The YAML the config came from (finds a relative training recipe).

    Raises:
        ConfigError: No data directory, or an invalid config.
        DataNotFoundError: The data directory does not exist.
        DataFormatError: A data file is malformed.
    """
    if not isinstance(cfg, ExperimentConfig):
        config_path = Path(cfg)
        cfg = load_config(ExperimentConfig, cfg)
    root = data_dir or cfg.data_dir
    if root is None:
        raise ConfigError("no data directory: set data_dir in the config or pass --data")
    data = MBEIRDir(root)
    e = cfg.enhance
    policy = Policy(e.query_tokens, e.candidate_tokens, e.query_caption_words,
                    e.candidate_caption_words, e.query_text_words)
    out = Plan(config_to_dict(cfg), str(data.root), "fast" if fast else "bytes")
    rows = _Rows()
    scanner = KeyScanner(data, policy, fast=fast, workers=cfg.planning.workers)
    for split, side in cfg.enhancements():
        files = stage_files(cfg, data, split, side)
        if not files:
            out.notes.append(f"no {side} files of split {split!r} in {data.root}")
        stage = scanner.scan(split, side, files)
        for f in stage.files:
            rows.known[(data.root / f["file"]).resolve()] = f["rows"]
        out.stages.append(stage)
    _enhancement(cfg, out, scanner, policy)
    _embedding(cfg, data, out, rows)
    _index_memory(cfg, out)
    _training(cfg, data, out, rows, Path(config_path) if config_path else None)
    hours = {k: out.gpu_hours[k] for k in ("enhancement", "embedding", "training")}
    out.gpu_hours["total"] = sum(hours.values())
    out.gpu_hours["wall_hours"] = out.gpu_hours["total"] / cfg.gpus
    return out


def _enhancement(cfg: ExperimentConfig, out: Plan, scanner: KeyScanner, policy: Policy) -> None:
    tps = cfg.planning.throughput.vlm_output_tokens_per_s
    budgets = {"caption_candidate": policy.candidate_tokens}
    expected = maximal = 0.0
    for stage in out.stages:
        for name, rc in stage.by_route.items():
            r = out.routes.setdefault(name, {"rows": 0, "unique": 0, "missing_rows": 0})
            r["rows"] += rc.rows
            r["unique"] += rc.new_unique
            r["missing_rows"] += rc.missing_rows
    for name, r in out.routes.items():
        generate = r["unique"]
        r["mean_tokens"] = cfg.planning.tokens(name)
        r["budget_tokens"] = budgets.get(name, policy.query_tokens)
        r["expected_tokens"] = generate * r["mean_tokens"]
        r["max_tokens"] = generate * r["budget_tokens"]
        r["gpu_hours"] = r["expected_tokens"] / tps / _HOUR
        expected += r["expected_tokens"]
        maximal += r["max_tokens"]
    out.enhancement = {
        "rows": sum(s.rows for s in out.stages),
        "passthrough": sum(s.passthrough for s in out.stages),
        "generate": sum(s.generate for s in out.stages),
        "unique_keys": sum(s.new_unique_keys for s in out.stages),
        "unique_images": len(scanner.images),
        "missing_images": len(scanner.missing),
        "missing_image_rows": sum(s.missing_image_rows for s in out.stages),
        "expected_output_tokens": expected,
        "max_output_tokens": maximal,
        "gpu_hours_max": maximal / tps / _HOUR,
    }
    out.gpu_hours["enhancement"] = expected / tps / _HOUR
    if cfg.enhance.backend == "reference":  # answers from records: no model runs
        out.gpu_hours["enhancement"] = out.enhancement["gpu_hours_max"] = 0.0
        out.notes.append("the reference backend is a simulated perfect VLM (records, no "
                         "model): its enhancement needs no GPU")
    if out.enhancement["missing_images"]:
        out.notes.append(f"{out.enhancement['missing_images']} image file(s) missing on disk "
                         f"({out.enhancement['missing_image_rows']} rows); they would fail "
                         "enhancement and are counted by path")


def _pool_files(cfg: ExperimentConfig, data: MBEIRDir, tasks: list[TaskFiles]
                ) -> tuple[dict[str, Path], dict[str, Path]]:
    """(local pools searched, files of the union pool), as ``augret embed`` selects them."""
    split = cfg.splits.eval
    local: dict[str, Path] = {}
    if "local" in cfg.pools:
        if cfg.tasks:
            local = {t.task.pool: t.pool for t in tasks if t.pool is not None}
        else:
            others = {"train", "val", "test"} - {split}
            local = {n: p for n, p in data.local_pools().items()
                     if not any(n.endswith(f"_{o}") for o in others)}
    union: dict[str, Path] = {}
    if "union" in cfg.pools and split == "test":
        union = data.union_pools()
    return local, union


def _embedding(cfg: ExperimentConfig, data: MBEIRDir, out: Plan, rows: _Rows) -> None:
    tasks = data.tasks(cfg.splits.eval)
    if cfg.tasks:
        tasks = [t for t in tasks if t.task.name in set(cfg.tasks)]
    query_rows = sum(rows(t.queries) for t in tasks)
    local, union = _pool_files(cfg, data, tasks)
    local_rows = sum(rows(p) for p in local.values())
    union_rows = sum(rows(p) for p in union.values())
    # Each pool file is embedded once: a union of local pools reuses their embeddings (UniIR's
    # embedder); a global union file is embedded on its own.
    pool_rows = sum(rows(p) for p in {**local, **union}.values())
    if not tasks:
        out.notes.append(f"no {cfg.splits.eval} query files of the selected tasks")
    if not local and not union:
        out.notes.append("no candidate pool in the data directory: pool embeddings and "
                         "indexes are 0")
    elif UNION in union:
        out.notes.append("union index from the global test pool file (embedded on its own)")
    elif "union" in cfg.pools and len(union) < len(UNION_POOL_ORDER):
        out.notes.append(f"union pool = concatenation of {len(union)}/{len(UNION_POOL_ORDER)} "
                         "local test pools present")
    lexical = [c.name for c in cfg.conditions if c.retriever != "dense"]
    if lexical:
        out.notes.append(f"BM25 indexes (conditions {', '.join(lexical)}) are not estimated; "
                         "they need no GPU")
    seeds = len(cfg.seeds or [None])
    sets = []
    for enc, side, view in cfg.embedding_sets():
        n = query_rows if side == "queries" else pool_rows
        runs = 1 if enc.startswith("pretrained") else seeds  # a trained encoder per seed
        rate = cfg.embed_items_per_s(enc)
        sets.append({"encoder": enc, "side": side, "view": view, "rows": n, "runs": runs,
                     "dim": cfg.embedding_dim(enc), "items_per_s": rate,
                     "gpu_hours": n * runs / rate / _HOUR})
    items = sum(s["rows"] * s["runs"] for s in sets)
    dim = cfg.embedding_dim()
    out.embedding = {"encoder": cfg.encoder, "dim": dim, "query_rows": query_rows,
                     "pool_rows": pool_rows, "sets": sets, "items": items,
                     "fp16_bytes": sum(s["rows"] * s["runs"] * (s["dim"] or 0) * 2 for s in sets)}
    out.gpu_hours["embedding"] = sum(s["gpu_hours"] for s in sets)
    unknown = sorted({cfg.encoder_name(s["encoder"]) for s in sets if s["dim"] is None})
    for name in unknown:
        out.notes.append(f"embedding width of {name!r} unknown: its index memory is 0 "
                         "(set planning.embedding_dim for the experiment's encoder)")
    ids = cfg.planning.id_bytes
    largest_local = max((rows(p) for p in local.values()), default=0)
    indexes = []
    for s in sets:
        if s["side"] != "pool":
            continue
        d = s["dim"] or 0
        fp32, fp16 = d * 4 + ids, d * 2 + ids
        names = [c.name for c in cfg.conditions
                 if cfg.encoder_key(c) == s["encoder"] and cfg.view_name(c, c.corpus) == s["view"]]
        for pool, n, largest in (("local", local_rows, largest_local),
                                 ("union", union_rows, union_rows)):
            if pool in cfg.pools:
                indexes.append({"encoder": s["encoder"], "view": s["view"], "pool": pool,
                                "conditions": names, "rows": n,
                                "vector_bytes": n * d * 4, "id_bytes": n * ids,
                                "bytes": n * fp32, "largest_index_bytes": largest * fp32,
                                "fp16_vector_bytes": n * d * 2,
                                "fp16_bytes": n * fp16, "largest_fp16_bytes": largest * fp16})
    out.index = {"kind": _index_kind(cfg), "local_rows": local_rows, "union_rows": union_rows,
                 "local_pools": sorted(local), "union_parts": list(union), "indexes": indexes,
                 "largest_index_bytes": max((i["largest_index_bytes"] for i in indexes),
                                            default=0),
                 "largest_fp16_bytes": max((i["largest_fp16_bytes"] for i in indexes),
                                           default=0)}


def _index_kind(cfg: ExperimentConfig) -> str:
    """The dense index kind the conditions build (``retrieval.index.kind``, default flat)."""
    index = cfg.retrieval.get("index")
    return str(index.get("kind", "flat")) if isinstance(index, dict) else "flat"


def _machine(cfg: ExperimentConfig) -> dict[str, Any]:
    """The memory the plan compares against: the config's, else this machine's."""
    from augret.index.memory import this_machine

    p = cfg.planning
    found = this_machine() if p.memory_gb is None or p.gpu_memory_gb is None else None
    ram = int(p.memory_gb * 2**30) if p.memory_gb is not None else found.ram
    if p.gpu_memory_gb is not None:
        gpus = [int(p.gpu_memory_gb * 2**30)] * cfg.gpus
    else:
        gpus = found.gpus
    ram_from = "the config" if p.memory_gb is not None else "this machine"
    gpus_from = "the config" if p.gpu_memory_gb is not None else "this machine"
    source = ram_from if ram_from == gpus_from else f"RAM of {ram_from}, GPUs of {gpus_from}"
    return {"ram_bytes": ram, "gpu_bytes": gpus, "source": source}


def _index_memory(cfg: ExperimentConfig, out: Plan) -> None:
    """Compare the largest index any condition searches with the machine's memory."""
    from augret.experiment.plan_render import human_bytes as hb
    from augret.index.config import SearchConfig

    machine = _machine(cfg)
    out.index["machine"] = machine
    indexes = out.index["indexes"]
    if not indexes:
        return
    kind = out.index["kind"]
    if kind not in ("flat", "flat16"):
        out.notes.append(f"index kind {kind}: its memory is not estimated (the exact kinds' "
                         "figures are shown)")
        return
    big = max(indexes, key=lambda i: i["largest_index_bytes"])
    where = f"{big['encoder']}, {big['view']} corpus, {big['pool']}"
    fp32, fp16 = big["largest_index_bytes"], big["largest_fp16_bytes"]
    ram, gpus = machine["ram_bytes"], machine["gpu_bytes"]
    block = SearchConfig().block_mb << 20
    ram_text = f"the {hb(ram)} RAM ({machine['source']})"
    if kind == "flat" and ram and fp32 > ram:
        out.warnings.append(
            f"the largest flat index ({where}) needs {hb(fp32)} (float32 vectors and ids), "
            f"more than {ram_text}; use the flat16 kind (retrieval: {{index: {{kind: "
            f"flat16}}}}): the same results, {hb(fp16)} of float16 mapped from disk and one "
            f"{hb(block)} search block in RAM")
    if kind == "flat16" and ram and fp16 > ram:
        out.warnings.append(
            f"the largest flat16 index ({where}) maps {hb(fp16)} (float16 vectors and ids), "
            f"more than {ram_text}: every query batch reads them from disk; use large search "
            "batches")
    if kind == "flat16" and gpus:
        per_gpu = fp16 / len(gpus) + block
        if per_gpu > min(gpus):
            out.warnings.append(
                f"the largest flat16 index ({where}) needs {hb(per_gpu)} on each of "
                f"{len(gpus)} GPU(s) of {hb(min(gpus))} ({machine['source']}): it does not "
                "stay resident, and every query batch streams it from the host")


def _training(cfg: ExperimentConfig, data: MBEIRDir, out: Plan, rows: _Rows,
              config_path: Path | None) -> None:
    runs = cfg.trainings()
    if not runs:
        out.training = {"runs": [], "samples": 0}
        out.gpu_hours["training"] = 0.0
        return
    train_file = data.train_file()
    if train_file is not None:
        n, source = rows(train_file), str(train_file.relative_to(data.root))
    elif cfg.training.train_queries is not None:
        n, source = cfg.training.train_queries, "training.train_queries"
    else:
        n, source = 0, None
        out.notes.append("no training file (query/union_train/mbeir_union_up_train.jsonl) and "
                         "no training.train_queries: training samples are 0")
    recipes: dict[str, Any] = {}
    entries = []
    seeds = cfg.seeds or [None]  # each training run once per seed
    for key, names in runs.items():
        cond = cfg.condition(names[0])
        recipe = cfg.recipe(cond)
        if recipe not in recipes:
            recipes[recipe] = _training_config(cfg, config_path, out.notes, recipe)
        tc = recipes[recipe]
        samples = n * tc.epochs
        if tc.max_steps is not None:
            samples = min(samples, tc.max_steps * tc.batch_size * tc.grad_accum * cfg.gpus)
        rate = cfg.train_samples_per_s(key)
        entries.append({"view": key, "conditions": names,
                        "encoder": cfg.starting_encoder(cond), "recipe": recipe,
                        "epochs": tc.epochs, "batch_size": tc.batch_size, "samples": samples,
                        "samples_per_s": rate, "seeds": seeds,
                        "gpu_hours": samples * len(seeds) / rate / _HOUR})
    default = recipes.get(cfg.training.recipe) or next(iter(recipes.values()))
    out.training = {
        "train_queries": n, "source": source, "epochs": default.epochs,
        "batch_size": default.batch_size, "gpus": cfg.gpus,
        "samples_per_run": entries[0]["samples"], "runs": entries,
        "samples": sum(e["samples"] * len(e["seeds"]) for e in entries),
    }
    out.gpu_hours["training"] = sum(e["gpu_hours"] for e in entries)
