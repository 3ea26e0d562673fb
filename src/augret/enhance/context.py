"""What the phases of one enhancement run share, and the interface every engine implements.

A run is plan → generate → assemble over the selected files:

* **plan** (:mod:`augret.enhance.plan`): read rows, route them, key them, look them up in the
  generation store;
* **generate** (an engine, with :mod:`augret.enhance.generate`): make each missing generation
  once per content key and commit it to the store and the run ledger;
* **assemble** (:mod:`augret.enhance.assemble`): write every file's rows in input order from
  the store and the ledger, with per-file counts.

Engines (local, ray) differ only in how they schedule these phases and where the model runs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from augret.data.mbeir import MBEIRDir
from augret.enhance.backends.base import Backend, GenerationParams
from augret.enhance.config import EnhanceConfig
from augret.enhance.item import output_rules
from augret.enhance.ledger import LEDGER_FILE, RunLedger
from augret.enhance.outputs import OutputRules
from augret.enhance.policy import Policy
from augret.enhance.prompts import PromptSet, load_prompts
from augret.enhance.store import GenerationStore

if TYPE_CHECKING:
    from augret.enhance.assemble import FileCounts

__all__ = ["RUN_FAILURES_FILE", "Engine", "EngineRun", "InputFile", "RunContext", "open_context",
           "policy_of"]

RUN_FAILURES_FILE = ".enhance_failures.jsonl.run"

#: A file to enhance and its side (``queries`` or ``candidates``).
InputFile = tuple[Path, str]


def policy_of(cfg: EnhanceConfig) -> Policy:
    """The policy budgets of a config."""
    return Policy(cfg.query_tokens, cfg.candidate_tokens, cfg.query_caption_words,
                  cfg.candidate_caption_words, cfg.query_text_words)


@dataclass
class RunContext:
    """The state one run's phases share.

    Attributes:
        cfg: The run's config.
        data: The source directory.
        out_root: The output directory.
        backend: The model (the local engine) or its identity (engines whose workers hold
            the model): its name, model id and revision enter the store keys.
        store: The generation store.
        prompts: The prompt set.
        policy: The routing budgets.
        params: Decoding parameters.
        rules: The checks on generated text.
        pool: Threads that read, hash and decode images.
        ledger: This run's attempts (and queued work).
        failures: This run's failure records (JSON lines, :data:`RUN_FAILURES_FILE`), merged
            into the output's failure file at the end.
    """

    cfg: EnhanceConfig
    data: MBEIRDir
    out_root: Path
    backend: Backend
    store: GenerationStore
    prompts: PromptSet
    policy: Policy
    params: GenerationParams
    rules: OutputRules
    pool: ThreadPoolExecutor
    ledger: RunLedger
    failures: IO[str]

    def close(self) -> None:
        """Release the threads, the store, the ledger and the failures file."""
        self.pool.shutdown()
        self.failures.close()
        self.store.close()
        self.ledger.close()


def open_context(cfg: EnhanceConfig, data: MBEIRDir, backend: Backend,
                 out_root: Path) -> RunContext:
    """Open the store, the ledger and the run's failure records for one run into
    ``out_root``."""
    out_root.mkdir(parents=True, exist_ok=True)
    store = GenerationStore(cfg.store)
    return RunContext(cfg, data, out_root, backend, store, load_prompts(cfg.prompts),
                      policy_of(cfg), GenerationParams(cfg.temperature, cfg.top_p, cfg.seed),
                      output_rules(cfg),
                      ThreadPoolExecutor(max(1, cfg.workers)),
                      RunLedger(out_root / LEDGER_FILE),
                      (out_root / RUN_FAILURES_FILE).open("w", encoding="utf-8"))


@dataclass
class EngineRun:
    """What an engine hands back: per-file counts (in the order of the files) and the
    engine section of the report."""

    files: list[tuple[InputFile, FileCounts]]
    report: dict[str, Any]


class Engine(Protocol):
    """One way of scheduling a run's phases.

    Attributes:
        name: The ``engine`` value of :class:`~augret.enhance.EnhanceConfig` it serves.
        loads_model: Whether the model runs in this process (the runner builds the backend,
            or takes the caller's); otherwise the engine's workers build their own from the
            config and the runner keys with the backend's identity.
    """

    name: str
    loads_model: bool

    def run(self, ctx: RunContext, files: list[InputFile], progress: Any) -> EngineRun:
        """Plan, generate and assemble ``files``; returns their counts."""
        ...
