"""The experiment config: data, enhancement, encoder, training, the conditions to compare and
the throughput assumptions of the planner.

One YAML file describes the whole paper-style experiment (``configs/mbeir-paper.yaml``); it is
loaded with :func:`augret.config.load_config`, so unknown keys are errors. ``augret plan``
reads it today; the ``augret experiment`` orchestrator runs it.

A *condition* is one evaluated system: which encoder (the pretrained one, or one trained on a
given view of the training data) searches which view (raw or enhanced) of the test queries
and of the corpus. Conditions that share a training view share one training run
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
    "Condition",
    "ExperimentConfig",
    "PlanSettings",
    "Splits",
    "Throughput",
    "TrainingSettings",
    "paper_conditions",
]

View = Literal["raw", "enhanced"]

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

    Attributes:
        name: Identifier (letters, digits, ``_.-``), e.g. ``fully_enhanced``.
        description: One line for reports.
        encoder: ``pretrained`` (zero-shot: the encoder as released) or ``trained`` (fine-tuned
            on the training split with ``train_queries`` / ``train_corpus`` views).
        train_queries: Training query text: ``raw`` or ``enhanced`` (ignored when pretrained).
        train_corpus: Training candidate text: ``raw`` or ``enhanced`` (ignored when pretrained).
        queries: Test query view searched.
        corpus: Test corpus view searched.
    """

    name: str
    description: str = ""
    encoder: Literal["pretrained", "trained"] = "trained"
    train_queries: View = "raw"
    train_corpus: View = "raw"
    queries: View = "raw"
    corpus: View = "raw"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"condition name {self.name!r} must be letters, digits, '_.-'")

    @property
    def training(self) -> str | None:
        """The training view's key (``q-raw_c-enhanced``...), ``None`` when pretrained."""
        if self.encoder == "pretrained":
            return None
        return f"q-{self.train_queries}_c-{self.train_corpus}"

    @property
    def encoder_key(self) -> str:
        """``pretrained`` or the training view: conditions with one key share an encoder."""
        return self.training or "pretrained"


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
    """

    recipe: str = "configs/train-clip_sf-large.yaml"
    overrides: dict[str, Any] = field(default_factory=dict)
    train_queries: int | None = None


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
        data_dir: The raw M-BEIR directory.
        output_dir: Everything the experiment writes goes below it.
        splits: Evaluated and training splits.
        tasks: Only these test tasks (default: every task present).
        pools: ``local`` and/or ``union``.
        encoder: Starting encoder (registered name, ``open_clip:``/``hf:`` spec or checkpoint).
        gpus: GPUs available (wall-clock estimates; the training launch).
        enhance: The VLM enhancement settings (``split``/``side`` are set per stage).
        training: Retriever training.
        retrieval: Overrides of ``augret mbeir run``'s RunConfig (validated by it).
        conditions: The evaluated systems (default: the paper's six).
        baseline: The condition others are compared with (``None``: no comparison).
        planning: The planner's assumptions.
    """

    name: str = "experiment"
    data_dir: Path | None = None
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

    # ---- what the conditions need ------------------------------------------------------
    def condition(self, name: str) -> Condition:
        """A condition by name (``KeyError`` if absent)."""
        for c in self.conditions:
            if c.name == name:
                return c
        raise KeyError(name)

    def trainings(self) -> dict[str, list[str]]:
        """Distinct training views → the conditions that use their encoder."""
        out: dict[str, list[str]] = {}
        for c in self.conditions:
            if c.training is not None:
                out.setdefault(c.training, []).append(c.name)
        return out

    def enhancements(self) -> list[tuple[str, str]]:
        """``(split, side)`` pairs the conditions need enhanced (side: queries / candidates)."""
        need: list[tuple[str, str]] = []
        trained = [c for c in self.conditions if c.training is not None]
        wants = [
            ((self.splits.eval, "queries"), any(c.queries == "enhanced" for c in self.conditions)),
            ((self.splits.eval, "candidates"),
             any(c.corpus == "enhanced" for c in self.conditions)),
            ((self.splits.train, "queries"), any(c.train_queries == "enhanced" for c in trained)),
            ((self.splits.train, "candidates"),
             any(c.train_corpus == "enhanced" for c in trained)),
        ]
        for key, wanted in wants:
            if wanted and key not in need:
                need.append(key)
        return need

    def embedding_sets(self) -> list[tuple[str, str, str]]:
        """Distinct ``(encoder key, side, view)`` triples to embed; side ``queries``/``pool``."""
        out: list[tuple[str, str, str]] = []
        for c in self.conditions:
            for item in ((c.encoder_key, "queries", c.queries), (c.encoder_key, "pool", c.corpus)):
                if item not in out:
                    out.append(item)
        return out

    def embedding_dim(self) -> int | None:
        """``planning.embedding_dim``, else the registered encoder's width, else ``None``."""
        return self.planning.embedding_dim or ENCODER_DIMS.get(self.encoder)
