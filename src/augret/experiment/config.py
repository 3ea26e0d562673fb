"""The experiment config: data, enhancement, encoder, training, the conditions to compare and
the throughput assumptions of the planner.

One YAML file describes the whole paper-style experiment (``configs/mbeir-paper.yaml``); it is
loaded with :func:`augret.config.load_config`, so unknown keys are errors. ``augret plan``
estimates it and the ``augret experiment`` orchestrator runs it.

A *condition* is one evaluated system: which retriever (dense, BM25 or their hybrid), which
encoder (the pretrained one, or one trained on a given view of the training data; the
experiment's encoder and recipe, or the condition's own, e.g. an MLLM embedder with LamRA's
recipe) and which view (raw or enhanced, in ``replace`` or ``append`` mode) of the test queries
and of the corpus it searches. Conditions that share a starting encoder, recipe and training
view share one training run (:meth:`ExperimentConfig.trainings`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from augret.config import check_choices, check_min, option
from augret.data.ids import eval_task
from augret.enhance.config import EnhanceConfig
from augret.errors import ConfigError

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "ENCODER_DIMS",
    "ENHANCED_DIRS",
    "PAPER_CONDITIONS",
    "ConditionConfig",
    "ExperimentConfig",
    "PlanConfig",
    "SampleConfig",
    "SplitsConfig",
    "ThroughputConfig",
    "TrainingConfig",
    "paper_conditions",
]

View = Literal["raw", "enhanced"]
Retriever = Literal["dense", "bm25", "hybrid"]
EnhanceMode = Literal["replace", "append", "shuffled"]

#: The enhanced directory (below the experiment's output directory) of each enhancement mode;
#: ``shuffled`` is the negative control (:mod:`augret.experiment.controls`): the ``replace``
#: texts permuted across items.
ENHANCED_DIRS: dict[str, str] = {"replace": "enhanced", "append": "enhanced-append",
                                 "shuffled": "enhanced-shuffled"}

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


def is_mllm(encoder: str) -> bool:
    """Whether ``encoder`` names an MLLM embedder (registered, ``mllm:`` or a checkpoint)."""
    from augret.encode.registry import resolve_mllm

    return resolve_mllm(encoder) is not None


def encoder_dim(encoder: str) -> int | None:
    """The embedding width of a registered encoder (CLIP_SF or MLLM) or of an ``mllm:`` spec
    of a known base model, else ``None``."""
    from augret.encode.mllm.spec import (
        BASE_MODEL_DIMS,
        MLLM_ENCODERS,
        is_mllm_name,
        parse_mllm_name,
    )

    if encoder in MLLM_ENCODERS:
        return MLLM_ENCODERS[encoder].dim
    if is_mllm_name(encoder):
        return BASE_MODEL_DIMS.get(parse_mllm_name(encoder).model)
    return ENCODER_DIMS.get(encoder)


def _slug(text: str) -> str:
    """``text`` as a directory-name part (letters, digits, ``.-``)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")


@dataclass(frozen=True)
class ConditionConfig:
    """One evaluated system.

    Rules, checked when the config is loaded:

    * ``retriever: bm25`` uses no encoder and trains nothing: leave ``encoder`` unset (setting
      it, ``pretrained`` included, is an error) and ``train_queries`` / ``train_corpus`` raw.
      It searches the ``queries`` / ``corpus`` views' text.
    * ``dense`` and ``hybrid`` use ``encoder`` (default ``trained``); ``hybrid`` fuses the
      condition's dense run with BM25 over the same views (reciprocal rank fusion,
      ``retrieval.rrf_k``).
    * ``model`` names another encoder than the experiment's (e.g. an MLLM embedder such as
      ``qwen3-vl-embedding-2b``): evaluated as released (``encoder: pretrained``) or the
      starting point of its training (``encoder: trained``).
    * ``recipe`` (trained conditions only) names the condition's own training recipe instead
      of ``training.recipe`` (e.g. ``configs/train-lamra-qwen2vl-2b.yaml`` for an MLLM
      embedder); ``training.overrides`` apply to every recipe.
    * ``enhance_mode`` may only be set on a condition that reads an enhanced view (test, or
      training when ``trained``). It applies to all of them: a condition trained on
      ``append`` text has its own training run; one trained on raw text shares the raw one.
    """

    name: str = option(help="Identifier (letters, digits, _.-), e.g. fully_enhanced.")
    description: str = option("", help="One line for reports.")
    encoder: Literal["pretrained", "trained"] | None = option(
        None, help="pretrained (zero-shot: the encoder as released) or trained (fine-tuned on "
                   "the training split with the train_queries / train_corpus views); default "
                   "trained for dense / hybrid, none (no encoder) for bm25.")
    train_queries: View = option("raw", help="Training query text: raw or enhanced (ignored "
                                             "when pretrained).")
    train_corpus: View = option("raw", help="Training candidate text: raw or enhanced "
                                            "(ignored when pretrained).")
    queries: View = option("raw", help="Test query view searched.")
    corpus: View = option("raw", help="Test corpus view searched.")
    retriever: Retriever = option("dense", help="dense (the encoder, exact FAISS search), "
                                                "bm25 or hybrid.")
    model: str | None = option(
        None, help="This condition's own encoder (registered name, open_clip:/hf:/mllm: spec "
                   "or checkpoint, e.g. qwen3-vl-embedding-2b) instead of the experiment's: "
                   "evaluated as released (pretrained) or trained from (trained).")
    recipe: str | None = option(
        None, help="This condition's own training recipe (a TrainConfig YAML, e.g. "
                   "configs/train-lamra-qwen2vl-2b.yaml) instead of training.recipe "
                   "(trained conditions only).")
    enhance_mode: EnhanceMode | None = option(
        None, help="The enhanced text of the condition's enhanced views: replace (VLM text "
                   "instead of the original), append (after it) or shuffled (a negative "
                   "control: the replace texts permuted across the items of each file and "
                   "route, so they keep their form and lose their content); default: the "
                   "experiment's enhance.mode.")

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or re.match(r"seed-\d", self.name):
            raise ConfigError(f"condition name {self.name!r} must be letters, digits, '_.-' "
                              "(and not seed-<n>: the seeds' folders)")
        check_choices(self)
        if self.retriever == "bm25":
            if self.encoder is not None:
                raise ConfigError(f"condition {self.name!r}: the bm25 retriever uses no "
                                  f"encoder; remove 'encoder: {self.encoder}'")
            if "enhanced" in (self.train_queries, self.train_corpus):
                raise ConfigError(f"condition {self.name!r}: the bm25 retriever trains "
                                  "nothing; train_queries and train_corpus must stay raw")
        elif self.encoder is None:
            object.__setattr__(self, "encoder", "trained")
        if self.recipe is not None and not self.trains:
            raise ConfigError(f"condition {self.name!r}: a recipe applies to trained "
                              "conditions (encoder: trained)")
        if self.enhance_mode is not None and "enhanced" not in self.views:
            raise ConfigError(f"condition {self.name!r}: enhance_mode applies to enhanced "
                              "views and this condition reads none")

    @property
    def trains(self) -> bool:
        """Whether the condition needs a retriever trained for it (a trained dense encoder)."""
        return self.encoder == "trained"

    @property
    def views(self) -> tuple[str, ...]:
        """The views it reads: test queries and corpus, then training views when it trains."""
        test = (self.queries, self.corpus)
        return (*test, self.train_queries, self.train_corpus) if self.trains else test


def paper_conditions() -> list[ConditionConfig]:
    """The six conditions of the paper's experiments and ablations."""
    c = ConditionConfig
    return [
        c("zero_shot", "pretrained encoder, raw queries and corpus", encoder="pretrained"),
        c("baseline", "trained on raw data, raw queries and corpus (UniIR)"),
        c("inference_only", "trained on raw data, enhanced queries and corpus",
          queries="enhanced", corpus="enhanced"),
        c("query_enhanced", "trained and evaluated with enhanced queries, raw corpus",
          train_queries="enhanced", queries="enhanced"),
        c("corpus_enhanced", "trained and evaluated with enhanced corpus, raw queries",
          train_corpus="enhanced", corpus="enhanced"),
        c("fully_enhanced", "trained and evaluated on enhanced queries and corpus",
          train_queries="enhanced", train_corpus="enhanced", queries="enhanced",
          corpus="enhanced"),
    ]


@dataclass(frozen=True)
class SampleConfig:
    """The shapes-world sample rendered when ``data_dir: sample``
    (:func:`augret.data.sample.write_sample`); also ``augret mbeir sample``'s options."""

    seed: int = option(0, help="Seed of every random choice (the same seed renders the same "
                               "files).")
    reps: int = option(1, help="Renderings per (shape, colour) in the test split's image "
                               "tasks.")
    train_reps: int = option(3, help="The same for the train split (its size drives training "
                                     "and enhancement).")

    def __post_init__(self) -> None:
        check_min(self, 1, "reps", "train_reps")


@dataclass(frozen=True)
class SplitsConfig:
    """Which query split is evaluated and which one trains the retriever."""

    eval: str = option("test", help="The evaluated query split.")
    train: str = option("train", help="The split that trains the retriever.")

    def __post_init__(self) -> None:
        if not self.eval or not self.train:
            raise ConfigError("splits.eval and splits.train must name a split")


@dataclass(frozen=True)
class TrainingConfig:
    """How the retriever is trained."""

    recipe: str = option("configs/train-clip_sf-large.yaml",
                         help="A TrainConfig YAML (relative paths: from the working "
                              "directory, else from the experiment config's folder or its "
                              "parent).")
    overrides: dict[str, Any] = option(factory=dict, help="Dotted-key overrides of the "
                                                          "recipe, e.g. {epochs: 10}.")
    train_queries: int | None = option(
        None, help="Planning only: training queries per epoch when the training file is not "
                   "(yet) in the data directory (M-BEIR's up-sampled union train file).")
    nproc: int | None = option(
        None, help="Training processes (DDP ranks) on this machine. None: the experiment's "
                   "gpus when CUDA is available, else 1. One trains in this process; more run "
                   "torchrun --nproc_per_node N -m augret train (NCCL on GPUs, gloo on CPU). "
                   "The recipe's batch_size is per rank, so N is part of the training's "
                   "fingerprint.")

    def __post_init__(self) -> None:
        check_min(self, 1, "nproc", "train_queries")


@dataclass(frozen=True)
class ThroughputConfig:
    """Assumed throughput **per GPU** (planning only; measure yours and put it here)."""

    vlm_output_tokens_per_s: float = option(
        1000.0, help="VLM generated tokens per second, image prefill included (the method "
                     "doc's 100-300 GPU-hours for 3.1M captions imply about 1,000).")
    embed_items_per_s: float = option(1000.0, help="Encoder items (queries or candidates) per "
                                                   "second.")
    mllm_embed_items_per_s: float = option(
        100.0, help="Items per second of MLLM embedders (conditions or experiments whose "
                    "encoder is one). The default is an estimate, not a measurement: a 2B "
                    "Qwen-VL embedder at ~500 tokens per item costs ~2 TFLOP per item, ~200 "
                    "items/s at 40% of an H100's bf16 peak; 7-8B models are ~4x slower. "
                    "Measure with benchmarks/gpu_mllm.py.")
    train_samples_per_s: float = option(150.0, help="Training queries (with their positives) "
                                                    "per second.")
    mllm_train_samples_per_s: float = option(
        12.0, help="Training queries per second of MLLM embedders (LoRA, bf16, gradient "
                   "checkpointing). The default is an estimate, not a measurement: if SMART's "
                   "6.5 h on 8 A100s (Qwen3-VL-2B, LamRA's recipe) is one epoch of M-BEIR's "
                   "1.1M training queries, that is ~6 per A100-second, an H100 about twice "
                   "that; 7-8B models are ~3x slower. Measure with benchmarks/gpu_mllm.py.")

    def __post_init__(self) -> None:
        for name in ("vlm_output_tokens_per_s", "embed_items_per_s", "mllm_embed_items_per_s",
                     "train_samples_per_s", "mllm_train_samples_per_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"throughput.{name} must be positive")


@dataclass(frozen=True)
class PlanConfig:
    """Assumptions of ``augret plan``."""

    throughput: ThroughputConfig = option(factory=ThroughputConfig,
                                          help="Per-GPU throughputs.")
    output_tokens: dict[str, float] = option(factory=dict,
                                             help="Mean output tokens per route (missing "
                                                  "routes: the defaults).")
    embedding_dim: int | None = option(None, help="Encoder width (default: from "
                                                  "ENCODER_DIMS).")
    id_bytes: int = option(8, help="Bytes per indexed row for ids (FAISS IDMap int64).")
    workers: int = option(8, help="Threads that read and hash images.")
    memory_gb: float | None = option(None, help="RAM of the machine that searches, in GiB "
                                                "(none: this machine's); index memory beyond "
                                                "it is warned about.")
    gpu_memory_gb: float | None = option(None, help="Memory of each of its GPUs (gpus of "
                                                    "them), in GiB (none: the GPUs of this "
                                                    "machine, if any).")

    def __post_init__(self) -> None:
        check_min(self, 1, "embedding_dim", "id_bytes", "workers")
        for name in ("memory_gb", "gpu_memory_gb"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"planning.{name} must be > 0, got {getattr(self, name)!r}")

    def tokens(self, route: str) -> float:
        """The mean output tokens assumed for ``route``."""
        return float(self.output_tokens.get(route, DEFAULT_OUTPUT_TOKENS.get(route, 0.0)))


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: data, enhancement, encoder, training and conditions."""

    name: str = option("experiment", help="Experiment name (reports).")
    data_dir: Path | None = option(None, help="The raw M-BEIR directory, or sample (render "
                                              "the shapes sample).")
    sample: SampleConfig = option(factory=SampleConfig,
                                  help="The sample's settings (data_dir: sample only).")
    output_dir: Path = option(Path("runs/experiment"),
                              help="Everything the experiment writes goes below it.")
    splits: SplitsConfig = option(factory=SplitsConfig, help="Evaluated and training splits.")
    tasks: list[str] | None = option(
        None, help="Only these test tasks (default: every task present). They limit "
                   "retrieval and the enhancement of the evaluated split: those tasks' query "
                   "files and the pools they search (their local pools; with the union pool, "
                   "every pool of the union). The union training file cannot be split by "
                   "task: training (and the enhancement of the training split) always uses "
                   "the whole training split.")
    pools: list[str] = option(factory=lambda: ["local", "union"], help="local and/or union.")
    encoder: str = option("clip_sf-vit-l-14", help="Starting encoder (registered name, "
                                                   "open_clip:/hf: spec or checkpoint).")
    gpus: int = option(8, help="GPUs available (wall-clock estimates; the training launch).")
    enhance: EnhanceConfig = option(factory=EnhanceConfig,
                                    help="The VLM enhancement settings (split and side are "
                                         "set per stage).")
    training: TrainingConfig = option(factory=TrainingConfig, help="Retriever training.")
    retrieval: dict[str, Any] = option(
        factory=dict, help="Overrides of augret mbeir run's RunConfig (validated by it), "
                           "except encoder, retriever, pools and tasks, which the experiment "
                           "sets.")
    conditions: list[ConditionConfig] = option(factory=paper_conditions,
                                               help="The evaluated systems (default: the "
                                                    "paper's six).")
    baseline: str | None = option("baseline", help="The condition others are compared with "
                                                   "(none: no comparison).")
    seeds: list[int] | None = option(
        None, help="Training seeds: every training view is trained once per seed (the "
                   "recipe's seed overridden) and every condition that uses a trained encoder "
                   "is evaluated once per seed; the report shows mean ± sd and each seed's "
                   "value. None: one training with the recipe's seed.")
    planning: PlanConfig = option(factory=PlanConfig, help="The planner's assumptions.")

    def __post_init__(self) -> None:
        names = [c.name for c in self.conditions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"condition names repeat: {dupes}")
        if self.baseline is not None and self.conditions and self.baseline not in names:
            raise ConfigError(f"baseline {self.baseline!r} is not a condition; have {names}")
        if not self.pools or any(p not in ("local", "union") for p in self.pools):
            raise ConfigError("pools must be 'local' and/or 'union'")
        check_min(self, 1, "gpus")
        for t in self.tasks or []:
            try:
                eval_task(t)
            except KeyError as exc:
                raise ConfigError(str(exc.args[0])) from None
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ConfigError("seeds must be a non-empty list of distinct integers")
        for key, where in _RESERVED_RETRIEVAL.items():
            if key in self.retrieval:
                raise ConfigError(f"retrieval.{key} is set by the experiment ({where})")

    # ---- what the conditions need ------------------------------------------------------
    def condition(self, name: str) -> ConditionConfig:
        """A condition by name (``KeyError`` if absent)."""
        for c in self.conditions:
            if c.name == name:
                return c
        raise KeyError(name)

    def seeds_of(self, c: ConditionConfig) -> list[int | None]:
        """The training seeds ``c`` is evaluated with: ``seeds`` when it uses a trained
        encoder, else ``[None]`` (one run: pretrained encoders and BM25 train nothing)."""
        return list(self.seeds) if self.seeds and c.trains else [None]

    def enhance_mode(self, c: ConditionConfig) -> str:
        """The enhancement mode of ``c``'s enhanced views (its own, else ``enhance.mode``)."""
        return c.enhance_mode or self.enhance.mode

    def view_name(self, c: ConditionConfig, view: str) -> str:
        """``raw``, or the enhanced directory of ``c``'s mode (``enhanced``,
        ``enhanced-append``) for an enhanced view."""
        return "raw" if view == "raw" else ENHANCED_DIRS[self.enhance_mode(c)]

    def training_key(self, c: ConditionConfig) -> str | None:
        """The training run's key (``q-raw_c-enhanced``, ``q-enhanced_c-raw_append``,
        ``mllm-lamra-Qwen-Qwen2-VL-2B-Instruct+train-lamra-qwen2vl-2b_q-raw_c-raw``...);
        ``None`` when ``c`` trains nothing (pretrained encoder, or bm25).

        The mode is part of the key only when a training view is enhanced, so conditions
        trained on raw text share one run whatever their mode; a condition's own starting
        encoder and recipe lead the key.
        """
        if not c.trains:
            return None
        key = f"q-{c.train_queries}_c-{c.train_corpus}"
        mode = self.enhance_mode(c)
        if "enhanced" in (c.train_queries, c.train_corpus) and mode != "replace":
            key += f"_{mode}"
        if c.model is not None or c.recipe is not None:
            own = _slug(c.model or self.encoder)
            if c.recipe is not None:
                own += "+" + _slug(Path(c.recipe).stem)
            key = f"{own}_{key}"
        return key

    def starting_encoder(self, c: ConditionConfig) -> str:
        """The encoder ``c`` embeds with as released, or trains from."""
        return c.model or self.encoder

    def recipe(self, c: ConditionConfig) -> str:
        """The training recipe of ``c`` (its own, else ``training.recipe``)."""
        return c.recipe or self.training.recipe

    def encoder_key(self, c: ConditionConfig) -> str | None:
        """``pretrained`` (the experiment's encoder), ``pretrained:<model>`` (the condition's
        own) or the training key (conditions with one key share an encoder); ``None`` for
        bm25 (no encoder)."""
        if c.retriever == "bm25":
            return None
        if c.trains:
            return self.training_key(c)
        return f"pretrained:{c.model}" if c.model is not None else "pretrained"

    def encoder_name(self, key: str) -> str:
        """The encoder (name, spec or checkpoint) an :meth:`encoder_key` starts from."""
        if key.startswith("pretrained:"):
            return key[len("pretrained:"):]
        for c in self.conditions:
            if self.training_key(c) == key:
                return self.starting_encoder(c)
        return self.encoder

    def trainings(self) -> dict[str, list[str]]:
        """Distinct training runs (:meth:`training_key`) → the conditions that use their
        encoder."""
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
            if mode == "shuffled":  # the control permutes the replace texts
                need.update((*key, "replace") for key, view in wants if view == "enhanced")
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

    def embedding_dim(self, key: str | None = None) -> int | None:
        """The width of the experiment's encoder (``planning.embedding_dim``, else the
        registered one's), or of an :meth:`encoder_key`'s; ``None`` when unknown."""
        name = self.encoder if key is None else self.encoder_name(key)
        if name == self.encoder and self.planning.embedding_dim:
            return self.planning.embedding_dim
        return encoder_dim(name)

    def train_samples_per_s(self, key: str) -> float:
        """Planning throughput of a training run (:meth:`training_key`): MLLM or not."""
        t = self.planning.throughput
        return t.mllm_train_samples_per_s if is_mllm(self.encoder_name(key)) \
            else t.train_samples_per_s

    def embed_items_per_s(self, key: str) -> float:
        """Planning throughput of an :meth:`encoder_key`'s encoder (MLLM or not)."""
        t = self.planning.throughput
        return t.mllm_embed_items_per_s if is_mllm(self.encoder_name(key)) \
            else t.embed_items_per_s
