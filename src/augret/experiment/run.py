"""``augret experiment``: the paper's experiment in one command, resumable stage by stage.

Stages, in order (each skipped when ``experiment.json`` records it done with the same input
fingerprint, so a rerun after a crash resumes where it stopped)::

    data                    the shapes sample rendered into OUT/data (``data_dir: sample``)
    enhance:<split>-<side>  VLM enhancement into OUT/enhanced (resumable via the store)
    train:<view>            one retriever per distinct training view, OUT/train/<view>
                            (a crashed run resumes from its latest checkpoint)
    condition:<name>        embed → index → retrieve → evaluate, OUT/conditions/<name>
                            (``run_mbeir``, which also reuses its unchanged stages)
    report                  OUT/report.md, results.json, plots/, and OUT/viewer.html
                            (baseline vs fully_enhanced, when both exist)

Fingerprints chain: a stage's fingerprint covers its config and its upstream stages'
fingerprints, so a change re-runs exactly the stages it affects.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from augret.config import config_to_dict, load_config, write_resolved
from augret.data.mbeir import MBEIRDir
from augret.errors import ConfigError, DataNotFoundError
from augret.experiment.config import Condition, ExperimentConfig
from augret.experiment.state import ExperimentState
from augret.pipeline.stages import file_stats, fingerprint

__all__ = ["SAMPLE", "resolve_recipe", "run_experiment"]

log = logging.getLogger(__name__)

#: ``data_dir`` value that renders the license-clean shapes sample into ``OUT/data``.
SAMPLE = "sample"
#: Enhancement settings that do not change what is generated.
_ENHANCE_IGNORED = ("store", "workers", "split", "side")
#: Training settings that do not change the trained encoder.
_TRAIN_IGNORED = ("output_dir", "resume", "progress", "log_every")


class _Runner:
    """Runs the stages of one experiment; ``outcome`` maps stage → ``ran`` / ``skipped``."""

    def __init__(self, cfg: ExperimentConfig, out: Path, config_path: Path | None,
                 progress: bool) -> None:
        self.cfg, self.out, self.config_path, self.progress = cfg, out, config_path, progress
        self.state = ExperimentState(out, cfg.name)
        self.outcome: dict[str, str] = {}
        self.fps: dict[str, str] = {}

    def stage(self, name: str, fp: str, work: Callable[[], dict[str, Any] | None]) -> None:
        """Run ``work`` unless ``name`` is recorded done with fingerprint ``fp``."""
        self.fps[name] = fp
        if self.state.is_done(name, fp):
            log.info("%s: done earlier (%s); skipped", name, fp)
            self.outcome[name] = "skipped"
            return
        log.info("%s: running (%s)", name, fp)
        t0 = time.perf_counter()
        self.state.start(name, fp)
        info = work() or {}
        self.state.finish(name, time.perf_counter() - t0, **info)
        self.outcome[name] = "ran"

    # ---- data ----------------------------------------------------------------------------
    def data(self) -> Path:
        """The raw data directory (rendering the sample when asked)."""
        if self.cfg.data_dir is None:
            raise ConfigError("no data_dir: set it in the config or pass --data")
        if str(self.cfg.data_dir) == SAMPLE:
            root = self.out / "data"

            def render() -> dict[str, Any]:
                from augret.data.sample import write_sample

                s = write_sample(root, seed=0)
                return {"queries": s.queries, "pools": s.pools}

            self.stage("data", fingerprint("sample", 0), render)
            return root
        root = Path(self.cfg.data_dir).resolve()
        if not root.is_dir():
            raise DataNotFoundError(f"{root}: no such data directory")
        files = sorted(p for top in ("query", "cand_pool", "qrels")
                       for p in (root / top).rglob("*.jsonl") if p.is_file())
        self.fps["data"] = fingerprint(str(root.resolve()), file_stats(files))
        return root

    # ---- enhancement ---------------------------------------------------------------------
    def enhance(self, data: Path) -> Path:
        """Enhance each (split, side) the conditions need into ``OUT/enhanced``."""
        from augret.enhance import enhance

        enhanced = self.out / "enhanced"
        for split, side in self.cfg.enhancements():
            ecfg = dataclasses.replace(self.cfg.enhance, split=split, side=side)
            params = {k: v for k, v in config_to_dict(ecfg).items() if k not in _ENHANCE_IGNORED}
            fp = fingerprint(self.fps["data"], split, side, params)

            def work(ecfg: Any = ecfg) -> dict[str, Any]:
                r = enhance(data, enhanced, ecfg, progress=self.progress)
                return {"last_run": r.get("last_run")}

            self.stage(f"enhance:{split}-{side}", fp, work)
        return enhanced

    def _enhance_fp(self, split: str, side: str) -> str:
        return self.fps[f"enhance:{split}-{side}"]

    # ---- training ------------------------------------------------------------------------
    def train(self, data: Path, enhanced: Path) -> dict[str, Path]:
        """Train one retriever per distinct training view; returns view → final encoder."""
        from augret.train import TrainConfig, train
        from augret.train.checkpoint import latest_checkpoint

        encoders: dict[str, Path] = {}
        split = self.cfg.splits.train
        for key in self.cfg.trainings():
            cond = next(c for c in self.cfg.conditions if c.training == key)
            run_dir = self.out / "train" / key
            tcfg = load_config(TrainConfig, resolve_recipe(self.cfg, self.config_path),
                               _train_overrides(self.cfg, cond, data, enhanced, run_dir))
            params = {k: v for k, v in config_to_dict(tcfg).items() if k not in _TRAIN_IGNORED}
            for k in ("dir", "enhanced_dir", "train_file", "train_pool"):
                params["data"].pop(k, None)  # covered by the upstream fingerprints
            upstream = [self.fps["data"]]
            upstream += [self._enhance_fp(split, s) for s, v in
                         (("queries", cond.train_queries), ("candidates", cond.train_corpus))
                         if v == "enhanced"]
            fp = fingerprint(upstream, params)
            name = f"train:{key}"
            prev = self.state.entry(name)

            def work(tcfg: Any = tcfg, run_dir: Path = run_dir, prev: Any = prev,
                     fp: str = fp) -> dict[str, Any]:
                same = prev is not None and prev.get("fingerprint") == fp
                if not same and run_dir.exists():
                    log.info("%s: inputs changed; starting over", run_dir)
                    shutil.rmtree(run_dir)
                ckpt = latest_checkpoint(run_dir) if run_dir.exists() else None
                if ckpt is not None:
                    log.info("%s: resuming from %s", run_dir, ckpt.name)
                summary = train(dataclasses.replace(tcfg, resume=ckpt is not None,
                                                    progress=self.progress))
                return {"resumed_from": ckpt.name if ckpt else None,
                        "step": summary.get("step")}

            self.stage(name, fp, work)
            encoders[key] = run_dir / "final"
        return encoders

    # ---- conditions ----------------------------------------------------------------------
    def conditions(self, data: Path, enhanced: Path, encoders: dict[str, Path]) -> dict[str, Path]:
        """Embed, index, retrieve and evaluate each condition; returns name → run files."""
        from augret.pipeline.mbeir import RunConfig, run_mbeir

        runs: dict[str, Path] = {}
        split = self.cfg.splits.eval
        for c in self.cfg.conditions:
            encoder = str(encoders[c.training]) if c.training else self.cfg.encoder
            rcfg = load_config(RunConfig, None, {**self.cfg.retrieval, "encoder": encoder,
                                                 "pools": self.cfg.pools,
                                                 "tasks": self.cfg.tasks})
            qdir = enhanced if c.queries == "enhanced" else data
            cdir = enhanced if c.corpus == "enhanced" else data
            upstream = [self.fps["data"], self.fps.get(f"train:{c.training}", encoder)]
            upstream += [self._enhance_fp(split, s) for s, v in
                         (("queries", c.queries), ("candidates", c.corpus)) if v == "enhanced"]
            rparams = {k: v for k, v in config_to_dict(rcfg).items() if k != "encoder"}
            fp = fingerprint(upstream, rparams)
            name = f"condition:{c.name}"
            out = self.out / "conditions" / c.name
            prev = self.state.entry(name)
            force = prev is None or prev.get("fingerprint") != fp  # e.g. a retrained encoder

            def work(rcfg: Any = rcfg, out: Path = out, qdir: Path = qdir, cdir: Path = cdir,
                     force: bool = force) -> dict[str, Any]:
                r = run_mbeir(data, out, rcfg, queries_dir=qdir, corpus_dir=cdir, force=force,
                              progress=self.progress)
                return {"run_dir": str(r.run_dir), "pipeline": r.status()}

            self.stage(name, fp, work)
            runs[c.name] = Path(self.state.entry(name)["run_dir"])
        return runs

    # ---- report --------------------------------------------------------------------------
    def report(self, data: Path, enhanced: Path, runs: dict[str, Path]) -> None:
        """The report over every condition and the baseline-vs-fully-enhanced viewer."""
        cfg = self.cfg
        fp = fingerprint([self.fps[f"condition:{c.name}"] for c in cfg.conditions],
                         cfg.baseline, cfg.name, cfg.pools)

        def work() -> dict[str, Any]:
            from augret.experiment.report import write_report

            specs = {c.name: {"run_dir": str(runs[c.name]), "data_dir": str(data),
                              "description": c.description} for c in cfg.conditions}
            r = write_report(self.out, specs, cfg.baseline, title=cfg.name)
            info: dict[str, Any] = {"plots": [str(p.relative_to(self.out)) for p in r.plots]}
            if cfg.baseline in runs and "fully_enhanced" in runs:
                from augret.experiment.viewer import write_viewer

                v = write_viewer(self.out / "viewer.html", data, runs[cfg.baseline],
                                 runs["fully_enhanced"],
                                 enhanced_dir=enhanced if enhanced.is_dir() else None,
                                 label_a=cfg.baseline, label_b="fully_enhanced",
                                 pool=cfg.pools[0])
                info["viewer"] = str(v.path.relative_to(self.out))
            return info

        self.stage("report", fp, work)


def _side_file(root: Path, default: Path | None, value: str | None) -> str | None:
    """The training file(s) ``value`` (or the layout default) taken from ``root``."""
    if value:
        return ",".join(str(p if Path(p).is_absolute() else root / p.strip())
                        for p in value.split(","))
    return str(root / default) if default is not None else None


def _train_overrides(cfg: ExperimentConfig, cond: Condition, data: Path, enhanced: Path,
                     run_dir: Path) -> dict[str, Any]:
    """Recipe overrides: the config's, then the encoder, output and data views of ``cond``."""
    out: dict[str, Any] = {"encoder": cfg.encoder, **cfg.training.overrides,
                           "output_dir": str(run_dir), "data.dir": str(data)}
    if cond.train_queries == "raw" and cond.train_corpus == "raw":
        return {**out, "data.view": "raw"}
    raw = MBEIRDir(data)
    qfile = raw.train_file().relative_to(data) if raw.train_file() else None
    pfile = raw.train_pool_file().relative_to(data) if raw.train_pool_file() else None
    recipe_q = cfg.training.overrides.get("data.train_file")
    recipe_p = cfg.training.overrides.get("data.train_pool")
    q_root = enhanced if cond.train_queries == "enhanced" else data
    p_root = enhanced if cond.train_corpus == "enhanced" else data
    return {**out, "data.view": "enhanced", "data.enhanced_dir": str(enhanced),
            "data.train_file": _side_file(q_root, qfile, recipe_q),
            "data.train_pool": _side_file(p_root, pfile, recipe_p)}


def resolve_recipe(cfg: ExperimentConfig, config_path: Path | None) -> Path:
    """The training recipe: as given, else beside the experiment config or its parent."""
    recipe = Path(cfg.training.recipe)
    bases = [Path.cwd()]
    if config_path is not None:
        bases += [config_path.parent, config_path.parent.parent]
    for base in bases:
        p = recipe if recipe.is_absolute() else base / recipe
        if p.is_file():
            return p
    raise DataNotFoundError(f"training recipe {recipe} not found (looked in "
                            f"{', '.join(str(b) for b in bases)})")


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path | None = None, *,
                   config_path: str | Path | None = None,
                   progress: bool = False) -> dict[str, str]:
    """Run (or resume) the whole experiment.

    Args:
        cfg: The experiment config.
        out_dir: Output directory (default: ``cfg.output_dir``).
        config_path: The config file (relative training recipes are looked up beside it).
        progress: Show the stages' progress bars.

    Returns:
        ``{stage: "ran" | "skipped"}`` in stage order.
    """
    out = Path(out_dir or cfg.output_dir).resolve()  # stages join paths under it
    out.mkdir(parents=True, exist_ok=True)
    write_resolved(cfg, out, "experiment_config.yaml")
    r = _Runner(cfg, out, Path(config_path) if config_path else None, progress)
    data = r.data()
    enhanced = r.enhance(data)
    encoders = r.train(data, enhanced)
    runs = r.conditions(data, enhanced, encoders)
    r.report(data, enhanced, runs)
    log.info("experiment %s: %s", cfg.name,
             ", ".join(f"{k} {v}" for k, v in r.outcome.items()))
    return r.outcome
