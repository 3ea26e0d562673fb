"""The experiment config: data, enhancement, encoder, training, the conditions to compare and
the throughput assumptions of the planner.

One YAML file describes the whole paper-style experiment (``configs/mbeir-paper.yaml``); it is
loaded with :func:`augret.config.load_config`, so unknown keys are errors. ``augret plan``
estimates it and the ``augret experiment`` orchestrator runs it.

A *condition* is one evaluated system: which retriever (dense, BM25 or their hybrid), which
encoder (the pretrained one, or one trained on a given view of the training data) and which
view (raw or enhanced, in ``replace`` or ``append`` mode) of the test queries and of the corpus
it searches. Conditions that share a training view share one training run
(:meth:`ExperimentConfig.trainings`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from augret.data.ids import eval_task
from augret.enhance.config import EnhanceConfig

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "ENCODER_DIMS",
    "ENHANCED_DIRS",
    "PAPER_CONDITIONS",
    "Condition",
    "ExperimentConfig",
    "PlanSettings",
    "SampleSettings",
    "Splits",
    "Throughput",
    "TrainingSettings",
    "paper_conditions",
]

View = Literal["raw", "enhanced"]
Retriever = Literal["dense", "bm25", "hybrid"]
EnhanceMode = Literal["replace", "append"]

#: The enhanced directory (below the experiment's output directory) of each enhancement mode.
ENHANCED_DIRS: dict[str, str] = {"replace": "enhanced", "append": "enhanced-append"}

#: Names of the paper's six conditions (:func:`paper_conditions`); others are optional extras.
PAPER_CONDITIONS: tuple[str, ...] = ("zero_shot", "baseline", "inference_only", "query_enhanced",
                                     "corpus_enhanced", "fully_enhanced")

#: ``retrieval`` keys the experiment sets itself (per experiment or per condition).
_RESERVED_RETRIEVAL = {"encoder": "the experiment's encoder and the conditions' encoder",
                       "retriever": "conditions[].retriever", "pools": "pools",
                       "tasks": "tasks"}

#: Expected mean output tokens per generating route. Captions take the middle of the method
#: doc's 150–300 tokens for candidates and ~1.4 tokens per word of the 50-word query caption;
#: rewrites and condensed constraints are a sentence or a phrase. The budgets
#: (``enhance.query_tokens`` / ``candidate_tokens``) give the upper bound.
DEFAULT_OUTPUT_TOKENS: dict[str, float] = {
    "entity_rewrite": 40.0,
    "condense": 20.0,
    "caption_query": 70.0,
    "caption_candidate": 200.0,
}

#: Embedding width of registered encoders (for index memory); others need ``embedding_dim``.
ENCODER_DIMS: dict[str, int] = {
    "clip_sf-vit-l-14": 768,
    "clip_sf-vit-l-14-336": 768,
    "clip_sf-vit-b-32": 512,
    "clip_sf-vit-b-16": 512,
    "clip_sf-hf-vit-l-14": 768,
    "clip_sf-siglip-vit-b-16": 768,
    "clip_sf-siglip-so400m-14-384": 1152,
    "clip_sf-hf-siglip-so400m": 1152,
    "tiny": 64,
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Condition:
    """One evaluated system.

    Rules, checked when the config is loaded:

    * ``retriever: bm25`` uses no encoder and trains nothing: leave ``encoder`` unset (setting
      it, ``pretrained`` included, is an error) and ``train_queries`` / ``train_corpus`` raw.
      It searches the ``queries`` / ``corpus`` views' text.
    * ``dense`` and ``hybrid`` use ``encoder`` (default ``trained``); ``hybrid`` fuses the
      condition's dense run with BM25 over the same views (reciprocal rank fusion,
      ``retrieval.rrf_k``).
    * ``enhance_mode`` may only be set on a condition that reads an enhanced view (test, or
      training when ``trained``). It applies to all of them: a condition trained on
      ``append`` text has its own training run; one trained on raw text shares the raw one.

    Attributes:
        name: Identifier (letters, digits, ``_.-``), e.g. ``fully_enhanced``.
        description: One line for reports.
        encoder: ``pretrained`` (zero-shot: the encoder as released) or ``trained`` (fine-tuned
            on the training split with ``train_queries`` / ``train_corpus`` views); default
            ``trained`` for ``dense`` / ``hybrid``, ``None`` (no encoder) for ``bm25``.
        train_queries: Training query text: ``raw`` or ``enhanced`` (ignored when pretrained).
        train_corpus: Training candidate text: ``raw`` or ``enhanced`` (ignored when pretrained).
        queries: Test query view searched.
        corpus: Test corpus view searched.
        retriever: ``dense`` (the encoder, exact FAISS search), ``bm25`` or ``hybrid``.
        enhance_mode: The enhanced text of the condition's enhanced views: ``replace`` (VLM
            text instead of the original) or ``append`` (after it); default: the experiment's
            ``enhance.mode``.
    """

    name: str
    description: str = ""
    encoder: Literal["pretrained", "trained"] | None = None
    train_queries: View = "raw"
    train_corpus: View = "raw"
    queries: View = "raw"
    corpus: View = "raw"
    retriever: Retriever = "dense"
    enhance_mode: EnhanceMode | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"condition name {self.name!r} must be letters, digits, '_.-'")
        if self.retriever not in ("dense", "bm25", "hybrid"):
            raise ValueError(f"condition {self.name!r}: retriever must be dense, bm25 or hybrid")
        if self.retriever == "bm25":
            if self.encoder is not None:
                raise ValueError(f"condition {self.name!r}: the bm25 retriever uses no encoder; "
                                 f"remove 'encoder: {self.encoder}'")
            if "enhanced" in (self.train_queries, self.train_corpus):
                raise ValueError(f"condition {self.name!r}: the bm25 retriever trains nothing; "
                                 "train_queries and train_corpus must stay raw")
        elif self.encoder is None:
            self.encoder = "trained"
        if self.enhance_mode is not None and "enhanced" not in self.views:
            raise ValueError(f"condition {self.name!r}: enhance_mode applies to enhanced views "
                             "and this condition reads none")

    @property
    def trains(self) -> bool:
        """Whether the condition needs a retriever trained for it (a trained dense encoder)."""
        return self.encoder == "trained"

    @property
    def views(self) -> tuple[str, ...]:
        """The views it reads: test queries and corpus, then training views when it trains."""
        test = (self.queries, self.corpus)
        return (*test, self.train_queries, self.train_corpus) if self.trains else test


def paper_conditions() -> list[Condition]:
    """The six conditions of the paper's experiments and ablations."""
    return [
        Condition("zero_shot", "pretrained encoder, raw queries and corpus", encoder="pretrained"),
        Condition("baseline", "trained on raw data, raw queries and corpus (UniIR)"),
        Condition("inference_only", "trained on raw data, enhanced queries and corpus",
                  queries="enhanced", corpus="enhanced"),
        Condition("query_enhanced", "trained and evaluated with enhanced queries, raw corpus",
                  train_queries="enhanced", queries="enhanced"),
        Condition("corpus_enhanced", "trained and evaluated with enhanced corpus, raw queries",
                  train_corpus="enhanced", corpus="enhanced"),
        Condition("fully_enhanced", "trained and evaluated on enhanced queries and corpus",
                  train_queries="enhanced", train_corpus="enhanced", queries="enhanced",
                  corpus="enhanced"),
    ]


@dataclass
class SampleSettings:
    """The shapes-world sample rendered when ``data_dir: sample``
    (:func:`augret.data.sample.write_sample`).

    Attributes:
        seed: Seed of every random choice (the same seed renders the same files).
        reps: Renderings per (shape, colour) in the test split's image tasks.
        train_reps: The same for the train split (its size drives training and enhancement).
    """

    seed: int = 0
    reps: int = 1
    train_reps: int = 3

    def __post_init__(self) -> None:
        if self.reps < 1 or self.train_reps < 1:
            raise ValueError("sample.reps and sample.train_reps must be at least 1")


@dataclass
class Splits:
    """Which query split is evaluated and which one trains the retriever."""

    eval: str = "test"
    train: str = "train"


@dataclass
class TrainingSettings:
    """How the retriever is trained.

    Attributes:
        recipe: A :class:`augret.train.TrainConfig` YAML (relative paths: from the working
            directory, else from the experiment config's folder or its parent).
        overrides: Dotted-key overrides of the recipe, e.g. ``{"epochs": 10}``.
        train_queries: Planning only: training queries per epoch when the training file is
            not (yet) in the data directory (M-BEIR's up-sampled union train file).
        nproc: Training processes (DDP ranks) on this machine. ``None``: the experiment's
            ``gpus`` when CUDA is available, else 1. One trains in this process; more run
            ``torchrun --nproc_per_node N -m augret train`` (NCCL on GPUs, gloo on CPU). The
            recipe's ``batch_size`` is per rank, so N is part of the training's fingerprint.
    """

    recipe: str = "configs/train-clip_sf-large.yaml"
    overrides: dict[str, Any] = field(default_factory=dict)
    train_queries: int | None = None
    nproc: int | None = None

    def __post_init__(self) -> None:
        if self.nproc is not None and self.nproc < 1:
            raise ValueError("training.nproc must be at least 1")


@dataclass
class Throughput:
    """Assumed throughput **per GPU** (planning only; measure yours and put it here).

    Attributes:
        vlm_output_tokens_per_s: VLM generated tokens per second, image prefill included
            (the method doc's 100–300 GPU-hours for 3.1M captions imply about 1,000).
        embed_items_per_s: Encoder items (queries or candidates) per second.
        train_samples_per_s: Training queries (with their positives) per second.
    """

    vlm_output_tokens_per_s: float = 1000.0
    embed_items_per_s: float = 1000.0
    train_samples_per_s: float = 150.0

    def __post_init__(self) -> None:
        for name in ("vlm_output_tokens_per_s", "embed_items_per_s", "train_samples_per_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"throughput.{name} must be positive")


@dataclass
class PlanSettings:
    """Assumptions of ``augret plan``.

    Attributes:
        throughput: Per-GPU throughputs.
        output_tokens: Mean output tokens per route (missing routes: the defaults).
        embedding_dim: Encoder width (default: from :data:`ENCODER_DIMS`).
        id_bytes: Bytes per indexed row for ids (FAISS ``IDMap`` int64).
        workers: Threads that read and hash images.
    """

    throughput: Throughput = field(default_factory=Throughput)
    output_tokens: dict[str, float] = field(default_factory=dict)
    embedding_dim: int | None = None
    id_bytes: int = 8
    workers: int = 8

    def tokens(self, route: str) -> float:
        """The mean output tokens assumed for ``route``."""
        return float(self.output_tokens.get(route, DEFAULT_OUTPUT_TOKENS.get(route, 0.0)))


@dataclass
class ExperimentConfig:
    """A whole experiment: data, enhancement, encoder, training and conditions.

    Attributes:
        name: Experiment name (reports).
        data_dir: The raw M-BEIR directory, or ``sample`` (render the shapes sample).
        sample: The sample's settings (``data_dir: sample`` only).
        output_dir: Everything the experiment writes goes below it.
        splits: Evaluated and training splits.
        tasks: Only these test tasks (default: every task present). They limit retrieval and
            the enhancement of the evaluated split: those tasks' query files and the pools
            they search (their local pools; with the ``union`` pool, every pool of the union).
            The union training file cannot be split by task: training (and the enhancement
            of the training split) always uses the whole training split.
        pools: ``local`` and/or ``union``.
        encoder: Starting encoder (registered name, ``open_clip:``/``hf:`` spec or checkpoint).
        gpus: GPUs available (wall-clock estimates; the training launch).
        enhance: The VLM enhancement settings (``split``/``side`` are set per stage).
        training: Retriever training.
        retrieval: Overrides of ``augret mbeir run``'s RunConfig (validated by it), except
            ``encoder``, ``retriever``, ``pools`` and ``tasks``, which the experiment sets.
        conditions: The evaluated systems (default: the paper's six).
        baseline: The condition others are compared with (``None``: no comparison).
        planning: The planner's assumptions.
    """

    name: str = "experiment"
    data_dir: Path | None = None
    sample: SampleSettings = field(default_factory=SampleSettings)
    output_dir: Path = Path("runs/experiment")
    splits: Splits = field(default_factory=Splits)
    tasks: list[str] | None = None
    pools: list[str] = field(default_factory=lambda: ["local", "union"])
    encoder: str = "clip_sf-vit-l-14"
    gpus: int = 8
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    retrieval: dict[str, Any] = field(default_factory=dict)
    conditions: list[Condition] = field(default_factory=paper_conditions)
    baseline: str | None = "baseline"
    planning: PlanSettings = field(default_factory=PlanSettings)

    def __post_init__(self) -> None:
        names = [c.name for c in self.conditions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"condition names repeat: {dupes}")
        if self.baseline is not None and self.conditions and self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not a condition; have {names}")
        if not self.pools or any(p not in ("local", "union") for p in self.pools):
            raise ValueError("pools must be 'local' and/or 'union'")
        if self.gpus < 1:
            raise ValueError("gpus must be at least 1")
        for t in self.tasks or []:
            try:
                eval_task(t)
            except KeyError as exc:
                raise ValueError(str(exc.args[0])) from None
        for key, where in _RESERVED_RETRIEVAL.items():
            if key in self.retrieval:
                raise ValueError(f"retrieval.{key} is set by the experiment ({where})")

    # ---- what the conditions need ------------------------------------------------------
    def condition(self, name: str) -> Condition:
        """A condition by name (``KeyError`` if absent)."""
        for c in self.conditions:
            if c.name == name:
                return c
        raise KeyError(name)

    def enhance_mode(self, c: Condition) -> str:
        """The enhancement mode of ``c``'s enhanced views (its own, else ``enhance.mode``)."""
        return c.enhance_mode or self.enhance.mode

    def view_name(self, c: Condition, view: str) -> str:
        """``raw``, or the enhanced directory of ``c``'s mode (``enhanced``,
        ``enhanced-append``) for an enhanced view."""
        return "raw" if view == "raw" else ENHANCED_DIRS[self.enhance_mode(c)]

    def training_key(self, c: Condition) -> str | None:
        """The training view's key (``q-raw_c-enhanced``, ``q-enhanced_c-raw_append``...);
        ``None`` when ``c`` trains nothing (pretrained encoder, or bm25).

        The mode is part of the key only when a training view is enhanced, so conditions
        trained on raw text share one run whatever their mode.
        """
        if not c.trains:
            return None
        key = f"q-{c.train_queries}_c-{c.train_corpus}"
        mode = self.enhance_mode(c)
        if "enhanced" in (c.train_queries, c.train_corpus) and mode != "replace":
            key += f"_{mode}"
        return key

    def encoder_key(self, c: Condition) -> str | None:
        """``pretrained`` or the training key (conditions with one key share an encoder);
        ``None`` for bm25 (no encoder)."""
        if c.retriever == "bm25":
            return None
        return self.training_key(c) or "pretrained"

    def trainings(self) -> dict[str, list[str]]:
        """Distinct training views → the conditions that use their encoder."""
        out: dict[str, list[str]] = {}
        for c in self.conditions:
            key = self.training_key(c)
            if key is not None:
                out.setdefault(key, []).append(c.name)
        return out

    def enhancements(self) -> list[tuple[str, str]]:
        """``(split, side)`` pairs the conditions need enhanced (side: queries / candidates).

        What must be generated: the modes share their generations (see
        :meth:`enhanced_views`)."""
        out: list[tuple[str, str]] = []
        for split, side, _mode in self.enhanced_views():
            if (split, side) not in out:
                out.append((split, side))
        return out

    def enhanced_views(self) -> list[tuple[str, str, str]]:
        """``(split, side, mode)`` enhancement outputs the conditions read, ``replace`` first.

        Each is one ``augret enhance`` run into the mode's directory (:data:`ENHANCED_DIRS`);
        a second mode re-uses the first one's generations from the store.
        """
        need: set[tuple[str, str, str]] = set()
        ev, tr = self.splits.eval, self.splits.train
        for c in self.conditions:
            mode = self.enhance_mode(c)
            wants = [((ev, "queries"), c.queries), ((ev, "candidates"), c.corpus)]
            if c.trains:
                wants += [((tr, "queries"), c.train_queries), ((tr, "candidates"), c.train_corpus)]
            need.update((*key, mode) for key, view in wants if view == "enhanced")
        order = [(ev, "queries"), (ev, "candidates"), (tr, "queries"), (tr, "candidates")]
        return [(*key, mode) for mode in ENHANCED_DIRS for key in dict.fromkeys(order)
                if (*key, mode) in need]

    def embedding_sets(self) -> list[tuple[str, str, str]]:
        """Distinct ``(encoder key, side, view)`` triples to embed; side ``queries``/``pool``,
        view as :meth:`view_name` (bm25 conditions embed nothing)."""
        out: list[tuple[str, str, str]] = []
        for c in self.conditions:
            enc = self.encoder_key(c)
            if enc is None:
                continue
            for item in ((enc, "queries", self.view_name(c, c.queries)),
                         (enc, "pool", self.view_name(c, c.corpus))):
                if item not in out:
                    out.append(item)
        return out

    def embedding_dim(self) -> int | None:
        """``planning.embedding_dim``, else the registered encoder's width, else ``None``."""
        return self.planning.embedding_dim or ENCODER_DIMS.get(self.encoder)
