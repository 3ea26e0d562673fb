"""``augret experiment``: the paper's experiment in one command, resumable stage by stage.

Stages, in order (each skipped when ``experiment.json`` records it done with the same input
fingerprint, so a rerun after a crash resumes where it stopped)::

    data                    the shapes sample rendered into OUT/data (``data_dir: sample``;
                            its ``sample:`` settings are fingerprinted)
    enhance:<split>-<side>  VLM enhancement into OUT/enhanced (resumable via the store); only
                            the files the experiment reads (``tasks``; the training files)
    enhance-append:<split>-<side>
                            the same in ``append`` mode into OUT/enhanced-append, for
                            conditions with ``enhance_mode: append`` (store hits: no new
                            generation)
    enhance-shuffled:<split>-<side>
                            the negative control: OUT/enhanced's texts permuted across
                            items into OUT/enhanced-shuffled (``enhance_mode: shuffled``)
    train:<key>             one retriever per distinct training run (starting encoder,
                            recipe and training view), OUT/train/<key> (a crashed run
                            resumes from its latest checkpoint); with ``seeds``, one per
                            seed: ``train:<key>/seed-<s>``, OUT/train/seed-<s>/<key>
    condition:<name>        embed → index → retrieve → evaluate, OUT/conditions/<name>
                            (``run_mbeir`` with the condition's retriever: dense, bm25 or
                            hybrid; it also reuses its unchanged stages); with ``seeds``, a
                            condition with a trained encoder runs once per seed:
                            ``condition:<name>/seed-<s>``, OUT/conditions/seed-<s>/<name>
    report                  OUT/report.md, results.json, plots/, and OUT/viewer.html
                            (baseline vs fully_enhanced, when both exist; first seed)

Fingerprints chain: a stage's fingerprint covers its config and its upstream stages'
fingerprints, so a change re-runs exactly the stages it affects.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from augret.config import hash_values, load_config, write_resolved
from augret.data.mbeir import MBEIRDir
from augret.errors import ConfigError, DataNotFoundError
from augret.experiment.config import ENHANCED_DIRS, ConditionConfig, ExperimentConfig
from augret.experiment.state import ExperimentState
from augret.formats.fingerprint import file_stats, fingerprint

__all__ = ["SAMPLE", "enhance_stage", "resolve_recipe", "run_experiment"]

log = logging.getLogger(__name__)

#: ``data_dir`` value that renders the license-clean shapes sample into ``OUT/data``.
SAMPLE = "sample"


def _seeded(name: str, seed: int | None) -> str:
    """A stage name with its seed (``name/seed-<s>``; unchanged for ``None``)."""
    return name if seed is None else f"{name}/seed-{seed}"


def _seed_dir(name: str, seed: int | None) -> str:
    """A training or condition directory (``seed-<s>/name``; ``name`` for ``None``): each
    seed's runs share a folder, apart from the unseeded runs' folders."""
    return name if seed is None else f"seed-{seed}/{name}"


def enhance_stage(split: str, side: str, mode: str) -> str:
    """The stage name of one enhancement output (``enhance:test-queries``,
    ``enhance-append:test-queries``)."""
    prefix = "enhance" if mode == "replace" else f"enhance-{mode}"
    return f"{prefix}:{split}-{side}"


class _Runner:
    """Runs the stages of one experiment; ``outcome`` maps stage → ``ran`` / ``skipped``."""

    def __init__(self, cfg: ExperimentConfig, out: Path, config_path: Path | None,
                 progress: bool) -> None:
        self.cfg, self.out, self.config_path, self.progress = cfg, out, config_path, progress
        self.state = ExperimentState(out, cfg.name)
        self.outcome: dict[str, str] = {}
        self.fps: dict[str, str] = {}
        self._backend: Any = None  # the VLM backend, shared by every enhancement run

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
            settings = self.cfg.sample

            def render() -> dict[str, Any]:
                from augret.data.sample import write_sample

                s = write_sample(root, seed=settings.seed, reps=settings.reps,
                                 train_reps=settings.train_reps)
                return {"queries": s.queries, "pools": s.pools}

            self.stage("data", fingerprint("sample", hash_values(settings)), render)
            return root
        root = Path(self.cfg.data_dir).resolve()
        if not root.is_dir():
            raise DataNotFoundError(f"{root}: no such data directory")
        files = MBEIRDir(root).data_files()
        self.fps["data"] = fingerprint(str(root.resolve()), file_stats(files))
        return root

    # ---- enhancement ---------------------------------------------------------------------
    def enhance(self, data: Path) -> dict[str, Path]:
        """Enhance each (split, side, mode) the conditions read; returns mode → directory."""
        from augret.enhance.files import select_files
        from augret.experiment.files import stage_files

        raw = MBEIRDir(data)
        dirs: dict[str, Path] = {}
        try:
            for split, side, mode in self.cfg.enhanced_views():
                out = dirs.setdefault(mode, self.out / ENHANCED_DIRS[mode])
                files = stage_files(self.cfg, raw, split, side)
                every = [p for p, _ in select_files(raw, split, side, self.cfg.enhance.files)]
                rel = [str(p.relative_to(raw.root)) for p in files]
                if mode == "shuffled":  # the control permutes the replace stage's texts
                    source = self.out / ENHANCED_DIRS["replace"]
                    fp = fingerprint(self._enhance_fp(split, side, "replace"), "shuffled", rel)

                    def shuffle(out: Path = out, rel: list[str] = rel, source: Path = source
                                ) -> dict[str, Any]:
                        from augret.experiment.controls import shuffle_enhanced

                        return shuffle_enhanced(source, out, rel, data_dir=data)

                    self.stage(enhance_stage(split, side, mode), fp, shuffle)
                    continue
                ecfg = dataclasses.replace(self.cfg.enhance, split=split, side=side, mode=mode)
                fp = fingerprint(self.fps["data"], split, side, hash_values(ecfg), rel)

                def work(ecfg: Any = ecfg, out: Path = out,
                         only: list[str] | None = None if files == every else rel
                         ) -> dict[str, Any]:
                    return self._enhance(data, out, ecfg, only)

                self.stage(enhance_stage(split, side, mode), fp, work)
        finally:
            if self._backend is not None:
                self._backend.close()
                self._backend = None
        return dirs

    def _enhance(self, data: Path, out: Path, ecfg: Any, only: list[str] | None
                 ) -> dict[str, Any]:
        """One enhancement stage: one ``enhance`` run, restricted to ``only`` (relative
        paths) when the stage reads a subset of what ``enhance`` would select."""
        from augret.enhance import enhance
        from augret.enhance.item import make_backend, resolve_model

        if only is not None and not only:
            raise DataNotFoundError(f"{data}: no {ecfg.side} file of split {ecfg.split!r} for "
                                    f"the tasks {self.cfg.tasks}")
        # the local engine's model is loaded once (a second mode's run is all store hits);
        # the ray engine builds its own in its workers
        local = ecfg.engine == "local"
        if local and self._backend is None:
            self._backend = make_backend(resolve_model(self.cfg.enhance, data))
        if only is not None:
            ecfg = dataclasses.replace(ecfg, files=[glob.escape(r) for r in only])
        report = enhance(data, out, ecfg, backend=self._backend if local else None,
                         progress=self.progress)
        return {"files": only, "last_run": report.get("last_run") or {}}

    def _enhance_fp(self, split: str, side: str, mode: str) -> str:
        return self.fps[enhance_stage(split, side, mode)]

    # ---- training ------------------------------------------------------------------------
    def nproc(self) -> int:
        """Training ranks: ``training.nproc``, else ``gpus`` when CUDA is there, else 1."""
        if self.cfg.training.nproc is not None:
            return self.cfg.training.nproc
        try:
            import torch

            return self.cfg.gpus if torch.cuda.is_available() else 1
        except ImportError:
            return 1

    def train(self, data: Path, enhanced: dict[str, Path]
              ) -> dict[tuple[str, int | None], Path]:
        """Train one retriever per distinct training run (and seed); returns
        ``(key, seed)`` → final encoder (seed ``None`` without ``seeds``)."""
        from augret.train import TrainConfig, train
        from augret.train.checkpoint import latest_checkpoint

        encoders: dict[tuple[str, int | None], Path] = {}
        split = self.cfg.splits.train
        trainings = self.cfg.trainings()
        if not trainings:  # zero-shot and bm25 conditions only: no recipe needed
            return encoders
        nproc = self.nproc()
        for key, names in trainings.items():
            cond = self.cfg.condition(names[0])
            recipe = resolve_recipe(self.cfg, self.config_path, self.cfg.recipe(cond))
            mode = self.cfg.enhance_mode(cond)
            for seed in self.cfg.seeds_of(cond):
                run_dir = self.out / "train" / _seed_dir(key, seed)
                overrides = _train_overrides(self.cfg, cond, data, enhanced.get(mode), run_dir)
                if seed is not None:
                    overrides["seed"] = seed
                tcfg = load_config(TrainConfig, recipe, overrides)
                params = hash_values(tcfg)  # the data paths: fingerprinted upstream
                upstream = [self.fps["data"]]
                upstream += [self._enhance_fp(split, s, mode) for s, v in
                             (("queries", cond.train_queries),
                              ("candidates", cond.train_corpus)) if v == "enhanced"]
                if nproc > 1:
                    params["world_size"] = nproc  # the recipe's batch size is per rank
                fp = fingerprint(upstream, params)
                name = _seeded(f"train:{key}", seed)
                prev = self.state.entry(name)

                def work(tcfg: Any = tcfg, run_dir: Path = run_dir, prev: Any = prev,
                         fp: str = fp, overrides: dict[str, Any] = overrides,
                         recipe: Path = recipe) -> dict[str, Any]:
                    same = prev is not None and prev.get("fingerprint") == fp
                    if not same and run_dir.exists():
                        log.info("%s: inputs changed; starting over", run_dir)
                        shutil.rmtree(run_dir)
                    ckpt = latest_checkpoint(run_dir) if run_dir.exists() else None
                    if ckpt is not None:
                        log.info("%s: resuming from %s", run_dir, ckpt.name)
                    if nproc > 1:
                        from augret.train.launch import run_torchrun

                        summary = run_torchrun(recipe, run_dir, nproc=nproc,
                                               overrides=overrides, resume=ckpt is not None)
                    else:
                        summary = train(dataclasses.replace(tcfg, resume=ckpt is not None,
                                                            progress=self.progress))
                    return {"resumed_from": ckpt.name if ckpt else None,
                            "step": summary.get("step"), "world_size": nproc}

                self.stage(name, fp, work)
                encoders[key, seed] = run_dir / "final"
        return encoders

    # ---- conditions ----------------------------------------------------------------------
    def conditions(self, data: Path, enhanced: dict[str, Path],
                   encoders: dict[tuple[str, int | None], Path]
                   ) -> dict[str, dict[int | None, Path]]:
        """Embed, index, retrieve and evaluate each condition (once per seed of its trained
        encoder); returns name → {seed: run files} (seed ``None``: one unseeded run)."""
        from augret.pipeline.mbeir import RunConfig, run_mbeir

        runs: dict[str, dict[int | None, Path]] = {}
        split = self.cfg.splits.eval
        for c in self.cfg.conditions:
            key = self.cfg.training_key(c)
            mode = self.cfg.enhance_mode(c)
            qdir = enhanced[mode] if c.queries == "enhanced" else data
            cdir = enhanced[mode] if c.corpus == "enhanced" else data
            for seed in self.cfg.seeds_of(c):
                encoder = None if c.retriever == "bm25" else (
                    str(encoders[key, seed]) if key else self.cfg.starting_encoder(c))
                rcfg = load_config(RunConfig, None, {**self.cfg.retrieval, "encoder": encoder,
                                                     "retriever": c.retriever,
                                                     "pools": self.cfg.pools,
                                                     "tasks": self.cfg.tasks})
                upstream = [self.fps["data"],
                            self.fps.get(_seeded(f"train:{key}", seed), encoder)]
                upstream += [self._enhance_fp(split, s, mode) for s, v in
                             (("queries", c.queries), ("candidates", c.corpus))
                             if v == "enhanced"]
                # the fields the condition's retriever reads; the encoder is in ``upstream``
                fp = fingerprint(upstream, hash_values(rcfg, scope=c.retriever))
                name = _seeded(f"condition:{c.name}", seed)
                out = self.out / "conditions" / _seed_dir(c.name, seed)
                prev = self.state.entry(name)
                force = prev is None or prev.get("fingerprint") != fp  # e.g. a retrained encoder

                def work(rcfg: Any = rcfg, out: Path = out, qdir: Path = qdir,
                         cdir: Path = cdir, force: bool = force) -> dict[str, Any]:
                    r = run_mbeir(data, out, rcfg, queries_dir=qdir, corpus_dir=cdir,
                                  force=force, progress=self.progress)
                    return {"run_dir": str(r.run_dir), "pipeline": r.status()}

                self.stage(name, fp, work)
                runs.setdefault(c.name, {})[seed] = Path(self.state.entry(name)["run_dir"])
        return runs

    # ---- report --------------------------------------------------------------------------
    def report(self, data: Path, enhanced: dict[str, Path],
               runs: dict[str, dict[int | None, Path]]) -> None:
        """The report over every condition and the baseline-vs-fully-enhanced viewer (the
        first seed's runs)."""
        cfg = self.cfg
        described = {c.name: {"description": c.description, "system": _system(cfg, c)}
                     for c in cfg.conditions}
        notices = _report_notices(cfg)
        fp = fingerprint([self.fps[_seeded(f"condition:{c.name}", s)] for c in cfg.conditions
                          for s in cfg.seeds_of(c)],
                         cfg.baseline, cfg.name, cfg.pools, described, notices)

        def work() -> dict[str, Any]:
            from augret.experiment.report import write_report

            specs: dict[str, dict[str, Any]] = {}
            for c in cfg.conditions:
                seeded = runs[c.name]
                first = next(iter(seeded.values()))
                specs[c.name] = {"run_dir": str(first), "data_dir": str(data),
                                 **described[c.name]}
                if None not in seeded:
                    specs[c.name]["seed_runs"] = {str(s): str(d) for s, d in seeded.items()}
            r = write_report(self.out, specs, cfg.baseline, title=cfg.name, notices=notices)
            info: dict[str, Any] = {"plots": [str(p.relative_to(self.out)) for p in r.plots]}
            if cfg.baseline in runs and "fully_enhanced" in runs:
                from augret.experiment.viewer import write_viewer

                edir = enhanced.get(cfg.enhance_mode(cfg.condition("fully_enhanced")))
                base, full = runs[cfg.baseline], runs["fully_enhanced"]
                seed = next(iter(full))
                v = write_viewer(self.out / "viewer.html", data,
                                 base.get(seed, next(iter(base.values()))), full[seed],
                                 enhanced_dir=edir if edir is not None and edir.is_dir()
                                 else None,
                                 label_a=cfg.baseline, label_b="fully_enhanced",
                                 pool=cfg.pools[0], notice=" ".join(notices) or None,
                                 title=None if seed is None else
                                 f"{cfg.baseline} vs fully_enhanced ({cfg.pools[0]} pools, "
                                 f"training seed {seed})")
                info["viewer"] = str(v.path.relative_to(self.out))
            return info

        self.stage("report", fp, work)


def _report_notices(cfg: ExperimentConfig) -> list[str]:
    """What the report must say first about the models behind its numbers: a simulated VLM
    (the reference captioner), a random one (a tiny preset), a random-init retriever."""
    from augret.enhance.tiny import resolve_tiny_preset

    notices = []
    enhances = bool(cfg.enhanced_views())
    if enhances and cfg.enhance.backend == "reference":
        records = ("the shapes world's scene records" if str(cfg.data_dir) == SAMPLE
                   else f"the records in {cfg.enhance.model}")
        notices.append(
            "Simulated world: the enhanced texts come from the reference captioner, a simulated "
            f"perfect VLM that answers from ground-truth records ({records}), not from a "
            "model. The numbers show what the method does when the VLM is perfect; they say "
            "nothing about a real VLM.")
    elif enhances and cfg.enhance.backend != "openai" and resolve_tiny_preset(cfg.enhance.model):
        notices.append(
            f"Smoke run: the VLM ({cfg.enhance.model}) is a randomly initialised tiny model, "
            "so its text is meaningless and every difference between conditions in this "
            "report is noise.")
    if cfg.encoder == "tiny":
        notices.append(
            "The retriever is augret's tiny CLIP_SF: randomly initialised, then trained here "
            "from scratch on the sample; zero_shot is that random initialisation.")
    return notices


def _system(cfg: ExperimentConfig, c: ConditionConfig) -> str:
    """One line for the report: retriever, encoder and the views searched."""
    enc = cfg.encoder_key(c)
    if enc is None:
        head = c.retriever
    elif c.trains:
        head = f"{c.retriever}, trained {enc}"
    else:
        head = f"{c.retriever}, pretrained{' ' + c.model if c.model else ''}"
    return (f"{head}; queries {cfg.view_name(c, c.queries)}, "
            f"corpus {cfg.view_name(c, c.corpus)}")


def _side_file(root: Path, default: Path | None, value: str | None) -> str | None:
    """The training file(s) ``value`` (or the layout default) taken from ``root``."""
    if value:
        return ",".join(str(p if Path(p).is_absolute() else root / p.strip())
                        for p in value.split(","))
    return str(root / default) if default is not None else None


def _train_overrides(cfg: ExperimentConfig, cond: ConditionConfig, data: Path,
                     enhanced: Path | None, run_dir: Path) -> dict[str, Any]:
    """Recipe overrides: the config's, then the encoder, output and data views of ``cond``
    (``enhanced``: the enhanced directory of its mode)."""
    out: dict[str, Any] = {"encoder": cfg.starting_encoder(cond), **cfg.training.overrides,
                           "output_dir": str(run_dir), "data.dir": str(data)}
    if cond.train_queries == "raw" and cond.train_corpus == "raw":
        return {**out, "data.view": "raw"}
    assert enhanced is not None  # enhanced_views() lists the view, enhance() made it
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


def resolve_recipe(cfg: ExperimentConfig, config_path: Path | None,
                   recipe: str | None = None) -> Path:
    """A training recipe (default ``training.recipe``): as given, else beside the experiment
    config or its parent."""
    recipe = Path(recipe or cfg.training.recipe)
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
