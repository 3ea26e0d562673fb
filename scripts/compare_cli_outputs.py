#!/usr/bin/env python3
"""Record every augret CLI command's output on two data sets, and compare two recordings.

A refactor that must not change behaviour is checked like this::

    python scripts/compare_cli_outputs.py record --tree /path/to/old-checkout --out golden/old
    python scripts/compare_cli_outputs.py record --tree /path/to/new-checkout --out golden/new
    python scripts/compare_cli_outputs.py compare golden/old golden/new   # exit 1 on a change

``record`` runs ``python -m augret ...`` with ``PYTHONPATH=TREE/src`` for each entry of
:data:`STEPS` (one declarative list, run in order), in a fresh workspace, on (a) the
shapes-world sample that ``augret mbeir sample`` renders and (b) a copy of
``../shared/data/mbeir-mini-mscoco``, plus small collections made from them for
``augret collection import``. The offline ``tiny`` presets are used throughout: the tiny VLM
for enhancement, the tiny CLIP_SF for embedding and training. ``augret serve`` is started on
a free loopback port, its HTTP endpoints are requested (:data:`SERVE_REQUESTS`), and it is
stopped with SIGINT. The CLI tree is walked through ``--help`` (each help text is recorded
too) and every command that no step runs is printed. ``list`` prints the steps.

Per step, ``OUT/manifest.json`` holds the argv, the exit code, the normalised stdout and
stderr, the HTTP responses (serve) and, for every file the step created, changed or removed in
the workspace (the generation store and caches under ``cache/`` included), the SHA-256 of its
normalised content. Normalised text outputs up to :data:`KEEP_BYTES` are kept under
``OUT/files/`` so that ``compare`` can print a unified diff. ``compare`` reports commands,
files, requests and help texts present on one side only, different exit codes, HTTP statuses
and contents, and exits 1 when anything differs (``--exclude REGEX`` leaves steps out, e.g.
``'^help/'`` for help texts a change rewords on purpose).

Determinism: two records of one tree are identical. What the script controls:

* the environment (:meth:`Recorder.env`): ``PYTHONHASHSEED=0``; one OpenMP/MKL/BLAS thread
  (float reductions and FAISS HNSW construction then run in one fixed order);
  ``TOKENIZERS_PARALLELISM=false``; ``HF_HUB_OFFLINE=1``; ``AUGRET_CACHE_DIR=<ws>/cache`` (a
  fresh generation store and tiny-model cache per record); ``COLUMNS=1000`` (rich never wraps
  a line, so wrapping cannot follow a timing's digits); ``MPLBACKEND=Agg``; ``TZ=UTC``;
  ``LC_ALL=C.UTF-8``. augret's seeds keep their defaults or are given in the steps;
* the workspace path is fixed (default :data:`DEFAULT_WORKSPACE`, one record at a time by a
  lock file): augret hashes absolute paths into config hashes and fingerprints;
* after each step every file it wrote gets one fixed mtime (:data:`FIXED_MTIME_NS`): stage
  fingerprints, skip records and the pool-offset cache hash their inputs' mtimes. Reuse is
  unaffected (a rerun compares against what earlier steps recorded after the same reset;
  the ``*-rerun`` steps show every stage reused);
* the experiment runs on the shapes sample rendered by the ``mbeir sample`` step (a sample
  rendered inside the run would carry run-dependent mtimes into every fingerprint).

Run-dependent by construction, and handled explicitly (:data:`VOLATILE_HASHES`,
:data:`INHERENT`, both written into the manifest):

* hashes of a creation date or of a file written earlier in the same process (search skip
  records; the experiment's per-condition hashes, which cover a checkpoint it trained seconds
  before): masked, or aliased ``<Hn>`` so that equal values stay equal;
* zip archives (``.npz``, torch ``.pt``): hashed by member name and content, not by the
  entries' timestamps; SQLite files (the generation store): hashed by their rows in rowid
  order with the ``created`` time masked; pool-offset cache files named by a hash of the
  pool's mtime: named by their content hash.

What normalisation masks in text (:data:`MASKS`, listed in the manifest), and nothing else:

* the workspace's absolute path -> ``<WS>``; the tree's absolute path -> ``<TREE>``;
* ISO 8601 dates and times -> ``<DATE>``;
* the values of timing, rate and date keys (:data:`VOLATILE_KEYS`: ``seconds``,
  ``build_seconds``, ``took_ms``, ``created``, ``started``, ``finished``, ``tokens_per_s``,
  ``rows_per_s``...) when the value is a float or a date (never an int), and of file
  modification times (:data:`MTIME_KEYS`), in JSON, YAML and Python-repr text -> ``<MASKED>``;
* in stdout, stderr and HTTP bodies only: rates and durations in running text
  (``12.3 rows/s``, ``in 3.2s``, ``(0.1s)``, ``0:00:05``) -> ``<RATE>`` / ``<DURATION>``;
  the cells of rich table columns headed by a rate or a duration (``tok/s``, ``seconds``)
  -> ``<MASKED>``, and rich tables' cell padding and rules are collapsed (column widths
  follow those cells);
* loopback ports (``127.0.0.1:PORT``) and server pids (``process [PID]``);
* installed third-party package versions under :data:`VERSION_KEYS` (``faiss_version``,
  ``transformers_version``...);
* trailing whitespace (rich pads log lines to the console width).

Config hashes, fingerprints, ids, scores, ranks and row order are never masked otherwise;
``.npy`` files, FAISS indexes, images and every other binary file are hashed byte for byte.
The tiny models' text and numbers are meaningless (random weights); they only have to be the
same before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 1
DEFAULT_WORKSPACE = Path(tempfile.gettempdir()) / "augret-cli-golden-workspace"
DEFAULT_PYTHON = "/work/main/.venv/bin/python"
DEFAULT_MSCOCO = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
                  / "mbeir-mini-mscoco")
KEEP_BYTES = 512 * 1024
FIXED_MTIME_NS = 978_307_200 * 10**9  # 2001-01-01T00:00:00Z
STEP_TIMEOUT = 900

# ---- what runs --------------------------------------------------------------------------------
# Placeholders in args: {data} the data set's directory, {p} its output prefix, {task} / {pool}
# / {qrels} / {did} / {did2} / {image} / {text} a task, pool, qrels file, candidate ids, a query
# image and a query text for it, {port} the serve port. Paths are relative to the workspace
# (the commands' cwd).
DATASETS: dict[str, dict[str, str]] = {
    "shapes": {"data": "shapes", "p": "s", "task": "mscoco_task0",
               "pool": "mscoco_task0_test",
               "qrels": "shapes/qrels/test/mbeir_mscoco_task0_test_qrels.txt",
               "did": "9:1", "did2": "9:7",
               "image": "shapes/mbeir_images/shapes_images/00000_red_circle.png",
               "text": "a red circle"},
    "mscoco": {"data": "mscoco", "p": "m", "task": "mscoco_task0",
               "pool": "mscoco_task0_test",
               "qrels": "mscoco/qrels/test/mbeir_mscoco_task0_test_qrels.txt",
               "did": "9:25428", "did2": "9:13735",
               "image": "mscoco/mbeir_images/mscoco_images/val2014/"
                        "COCO_val2014_000000022192.jpg",
               "text": "a dog sitting on a bed"},
}
BOTH = ("shapes", "mscoco")
TINY_RUN = ("--workers", "0", "--device", "cpu", "--no-progress")


@dataclass(frozen=True)
class Request:
    """One HTTP request to ``augret serve``."""

    name: str
    method: str
    path: str
    json: Any = None
    form: dict[str, str] | None = None
    image: str | None = None  # workspace path of a file sent as multipart "image" / JSON base64


@dataclass(frozen=True)
class Step:
    """One recorded invocation (``kind="cli"``), server session or workspace set-up.

    Attributes:
        name: Unique within its data set; the manifest key is ``<dataset>/<name>``.
        args: Arguments after ``python -m augret`` (or of the set-up action).
        datasets: The data sets it runs on (once per data set, placeholders filled); empty
            for a step that does not depend on one.
        kind: ``cli``, ``serve`` (args start the server; ``requests`` are sent) or ``setup``.
        alt: ``(path, args)`` pairs: when ``TREE/path`` exists, ``args`` replace the default
            (for a flag renamed in a later tree); the first match wins.
        requests: For ``serve``.
        timeout: Seconds before the command is killed (recorded as exit code ``timeout``).
        required: Runs even when ``record --only`` leaves it out (later steps need it).
    """

    name: str
    args: tuple[str, ...]
    datasets: tuple[str, ...] = ()
    kind: str = "cli"
    alt: tuple[tuple[str, tuple[str, ...]], ...] = ()
    requests: tuple[Request, ...] = ()
    timeout: int = STEP_TIMEOUT
    required: bool = False


def cli(name: str, *args: str, on: tuple[str, ...] = (), **kw: Any) -> Step:
    """A CLI step (``augret ARGS``)."""
    return Step(name, tuple(args), datasets=on, **kw)


def setup(name: str, *args: str, on: tuple[str, ...] = ()) -> Step:
    """A workspace set-up action of :data:`SETUP_ACTIONS`."""
    return Step(name, tuple(args), datasets=on, kind="setup")


SERVE_REQUESTS = (
    Request("healthz", "GET", "/healthz"),
    Request("page", "GET", "/"),
    Request("search-text", "POST", "/search", json={"text": "{text}", "k": 5}),
    Request("search-filtered", "POST", "/search",
            json={"text": "{text}", "task": "{task}", "modality": "image", "k": 4}),
    Request("search-image-json", "POST", "/search", json={"k": 3}, image="{image}"),
    Request("search-form", "POST", "/search", form={"text": "{text}", "k": "2"},
            image="{image}"),
    Request("item-image", "GET", "/items/{did}/image"),
    Request("error-k-too-large", "POST", "/search", json={"text": "{text}", "k": 21}),
    Request("error-unknown-field", "POST", "/search", json={"text": "x", "colour": "red"}),
    Request("error-bad-item-id", "GET", "/items/not-an-id/image"),
    Request("error-content-type", "POST", "/search", json=None),
)

# Every invocation, in order. Positional arguments and long flags as augret spells them. When a
# later tree renames a flag, give the step an alternative chosen by a path in that tree, e.g.
#   cli("embed", "embed", "{data}", ..., "--workers", "0",
#       alt=(("src/augret/encode/config.py", ("embed", "{data}", ..., "--set", "workers=0")),))
# (compare then prints the two argv as a note, not as a difference).
STEPS: tuple[Step, ...] = (
    setup("configs", "copy-configs"),
    cli("version", "--version"),
    # ---- the two data sets -----------------------------------------------------------------
    cli("mbeir-sample", "mbeir", "sample", "--out", "shapes", "--train-reps", "1",
        required=True),
    setup("copy-mscoco", "copy-mscoco", "mscoco"),
    setup("inputs", "make-inputs"),
    # ---- data layer ------------------------------------------------------------------------
    cli("mbeir-info", "mbeir", "info", "{data}", on=BOTH),
    cli("mbeir-info-json", "mbeir", "info", "{data}", "--json", on=BOTH),
    cli("mbeir-info-train", "mbeir", "info", "shapes", "--split", "train", "--json"),
    cli("mbeir-validate", "mbeir", "validate", "{data}", on=BOTH),
    cli("mbeir-validate-json", "mbeir", "validate", "{data}", "--json", "--max-examples", "3",
        on=BOTH),
    cli("mbeir-get", "mbeir", "get", "{data}", "{did}", "{did2}", "--pool", "{pool}", on=BOTH),
    cli("mbeir-get-union", "mbeir", "get", "{data}", "{did}", on=BOTH),
    cli("mbeir-download-source", "mbeir", "download", "--source", "mscoco", "--out", "m-dl",
        "--tasks", "mscoco_task0,mscoco_task3"),
    cli("mbeir-download-dry-run", "mbeir", "download", "--source", "mscoco", "--out", "m-dl2",
        "--tasks", "mscoco", "--dry-run"),
    cli("mbeir-download-offline", "mbeir", "download", "--out", "m-dl3", "--tasks",
        "cirr_task7"),
    # ---- collections -------------------------------------------------------------------------
    cli("collection-folder", "collection", "import", "inputs/photos", "--out", "c-photos",
        "--name", "photos"),
    cli("collection-csv", "collection", "import", "inputs/items.csv", "--out", "c-csv",
        "--name", "items", "--dataset-id", "200"),
    cli("collection-jsonl", "collection", "import", "inputs/items.jsonl", "--out", "c-jsonl",
        "--text-column", "caption", "--image-column", "picture", "--id-column", "key",
        "--captions", "none"),
    cli("collection-validate-folder", "mbeir", "validate", "c-photos"),
    cli("collection-validate-csv", "mbeir", "validate", "c-csv", "--json"),
    cli("collection-validate-jsonl", "mbeir", "validate", "c-jsonl"),
    cli("collection-info", "mbeir", "info", "c-csv", "--json"),
    # ---- enhance (tiny VLM) ------------------------------------------------------------------
    cli("enhance-queries", "enhance", "shapes", "--out", "s-enh-q", "--config",
        "configs/enhance-tiny.yaml", "--side", "queries", "--no-progress"),
    cli("enhance-candidates", "enhance", "mscoco", "--out", "m-enh-c", "--config",
        "configs/enhance-tiny.yaml", "--side", "candidates", "--no-progress", "--json"),
    cli("enhance-both", "enhance", "{data}", "--out", "{p}-enh", "--config",
        "configs/enhance-tiny.yaml", "--side", "both", "--no-progress", on=BOTH),
    cli("enhance-append-files", "enhance", "shapes", "--out", "s-enh-append", "--config",
        "configs/enhance-tiny.yaml", "--side", "both", "--mode", "append", "--files",
        "*mscoco_task3*", "--no-progress", "--json"),
    cli("enhance-validate", "mbeir", "validate", "{p}-enh", "--json", on=BOTH),
    # ---- train (tiny CLIP_SF, a few steps) ------------------------------------------------
    cli("train", "train", "configs/train-tiny.yaml", "--data", "shapes", "--output-dir",
        "s-train", "--max-steps", "4", "--set", "save_every=2", "--set", "log_every=1",
        "--set", "val.every=2", "--device", "cpu", "--no-progress", "--json"),
    cli("train-resume", "train", "configs/train-tiny.yaml", "--data", "shapes",
        "--output-dir", "s-train", "--max-steps", "6", "--set", "save_every=2", "--set",
        "log_every=1", "--set", "val.every=2", "--device", "cpu", "--no-progress",
        "--resume"),
    # ---- embed -------------------------------------------------------------------------------
    cli("embed", "embed", "{data}", "--encoder", "tiny", "--out", "{p}-emb", "--pools",
        "local,union", *TINY_RUN, "--json", on=BOTH),
    cli("embed-rerun", "embed", "shapes", "--encoder", "tiny", "--out", "s-emb", "--pools",
        "local,union", *TINY_RUN),
    cli("embed-enhanced", "embed", "{p}-enh", "--encoder", "tiny", "--out", "{p}-emb-enh",
        "--pools", "local", "--tasks", "{task}", "--instruction", "none", "--shard-size", "16",
        *TINY_RUN, on=BOTH),
    cli("embed-trained", "embed", "shapes", "--encoder", "s-train", "--out", "s-emb-trained",
        "--pools", "local", "--tasks", "mscoco_task0,cirr_task7", *TINY_RUN),
    # ---- indexes -----------------------------------------------------------------------------
    cli("index-build", "index", "build", "{p}-emb", "--out", "{p}-idx", "--no-progress",
        on=BOTH),
    cli("index-build-all", "index", "build", "{p}-emb", "--out", "{p}-idx-all", "--all",
        "--kind", "flat", "--no-progress", on=BOTH),
    cli("index-build-union", "index", "build", "{p}-emb", "--out", "{p}-idx-union", "--union",
        "--no-progress", on=BOTH),
    cli("index-build-pool", "index", "build", "{p}-emb", "--out", "{p}-idx-pool", "--pool",
        "{pool}", "--no-modalities", "--no-progress", on=BOTH),
    cli("index-build-hnsw", "index", "build", "{p}-emb", "--out", "{p}-idx-hnsw", "--union",
        "--kind", "hnsw", "--hnsw-m", "8", "--recall-queries", "20", "--seed", "1",
        "--no-progress", on=BOTH),
    cli("index-build-ivf", "index", "build", "{p}-emb", "--out", "{p}-idx-ivf", "--pool",
        "{pool}", "--kind", "ivf", "--nlist", "4", "--nprobe", "2", "--no-progress", on=BOTH),
    cli("index-build-rerun", "index", "build", "{p}-emb", "--out", "{p}-idx", "--no-progress",
        on=BOTH),
    cli("index-bm25", "index", "bm25", "{p}-enh", "--out", "{p}-bm25", "--no-progress",
        on=BOTH),
    cli("index-bm25-raw-union", "index", "bm25", "{data}", "--out", "{p}-bm25-raw", "--union",
        "--method", "robertson", "--no-progress", on=BOTH),
    cli("index-bm25-pool", "index", "bm25", "{p}-enh", "--out", "{p}-bm25-pool", "--pool",
        "{pool}", "--text-field", "txt_raw", "--stopwords", "none", "--no-progress", on=BOTH),
    cli("index-info", "index", "info", "{p}-idx", on=BOTH),
    cli("index-info-json", "index", "info", "{p}-idx/union", "--json", on=BOTH),
    cli("index-info-bm25", "index", "info", "{p}-bm25", "--json", on=BOTH),
    # ---- search, fuse, evaluate, compare, table ---------------------------------------------
    cli("search-dense", "search", "{p}-emb", "--index", "{p}-idx", "--out", "{p}-runs-dense",
        on=BOTH),
    cli("search-dense-rerun", "search", "{p}-emb", "--index", "{p}-idx", "--out",
        "{p}-runs-dense", on=BOTH),
    cli("search-bm25", "search", "{p}-enh", "--index", "{p}-bm25", "--out", "{p}-runs-bm25",
        on=BOTH),
    cli("search-bm25-raw", "search", "{data}", "--index", "{p}-bm25-raw", "--out",
        "{p}-runs-bm25-raw", "--query-field", "query_txt", "--threads", "1", on=BOTH),
    cli("search-hnsw", "search", "{p}-emb", "--index", "{p}-idx-hnsw", "--out",
        "{p}-runs-hnsw", "--pool", "union", "--ef-search", "16", on=BOTH),
    cli("search-filtered", "search", "{p}-emb", "--index", "{p}-idx", "--out",
        "{p}-runs-filtered", "--pool", "local", "--task", "{task}", "--k", "5",
        "--filter-modality", "--tag", "filtered", on=BOTH),
    cli("index-fuse", "index", "fuse", "{p}-runs-dense", "{p}-runs-bm25", "--out",
        "{p}-runs-hybrid", "--weights", "1,0.5", on=BOTH),
    cli("evaluate", "evaluate", "{p}-runs-dense/{task}_local.run", "--qrels", "{qrels}",
        on=BOTH),
    cli("evaluate-json", "evaluate", "{p}-runs-bm25/{task}_union.run", "--qrels", "{qrels}",
        "--metrics", "hit@1,recall@5,precision@5,mrr@10,ndcg@10,map@10", "--depth", "5",
        "--json", "--per-query", "{p}-per-query.jsonl", on=BOTH),
    cli("compare-files", "compare", "{p}-runs-dense/{task}_local.run",
        "{p}-runs-bm25/{task}_local.run", "--qrels", "{qrels}", "--samples", "2000", on=BOTH),
    cli("compare-dirs", "compare", "{p}-runs-dense", "{p}-runs-hybrid", "--data", "{data}",
        "--test", "bootstrap", "--samples", "2000", "--seed", "3", "--json", on=BOTH),
    cli("table", "mbeir", "table", "{data}", "{p}-runs-dense", on=BOTH),
    cli("table-csv", "mbeir", "table", "{data}", "{p}-runs-bm25", "--format", "csv", on=BOTH),
    cli("table-json", "mbeir", "table", "{data}", "{p}-runs-hybrid", "--format", "json",
        on=BOTH),
    cli("table-uniir", "mbeir", "table", "{data}", "{p}-runs-dense", "--format", "uniir-tsv",
        "--out", "{p}-table.tsv", on=BOTH),
    # ---- the one-shot pipeline ---------------------------------------------------------------
    cli("mbeir-run", "mbeir", "run", "{data}", "--encoder", "tiny", "--out", "{p}-run",
        *TINY_RUN, on=BOTH),
    cli("mbeir-run-rerun", "mbeir", "run", "{data}", "--encoder", "tiny", "--out", "{p}-run",
        *TINY_RUN, on=BOTH),
    cli("mbeir-run-bm25", "mbeir", "run", "{data}", "--retriever", "bm25", "--out",
        "{p}-run-bm25", "--no-progress", "--format", "json", on=BOTH),
    cli("mbeir-run-hybrid-enhanced", "mbeir", "run", "{data}", "--retriever", "hybrid",
        "--encoder", "tiny", "--enhanced-queries", "{p}-enh", "--enhanced-corpus", "{p}-enh",
        "--out", "{p}-run-hybrid", "--pools", "local", "--metrics", "mrr@10,ndcg@10",
        "--format", "csv", *TINY_RUN, on=BOTH),
    # ---- reports, viewer, plan -----------------------------------------------------------
    cli("report", "report", "{p}-report", "-c", "dense={p}-runs-dense", "-c",
        "bm25={p}-runs-bm25", "-c", "hybrid={p}-runs-hybrid", "--data", "{data}",
        "--baseline", "dense", "--samples", "2000", on=BOTH),
    cli("view", "view", "{p}-view.html", "--data", "{data}", "--a", "{p}-runs-dense", "--b",
        "{p}-runs-bm25", "--enhanced", "{p}-enh", "--label-a", "dense", "--label-b", "bm25",
        "--changed", "4", "--sampled", "3", on=BOTH),
    cli("plan", "plan", "configs/quickstart.yaml", "--data", "{data}", "--out",
        "{p}-plan.json", on=BOTH),
    cli("plan-paper-fast", "plan", "configs/mbeir-paper.yaml", "--data", "{data}", "--fast",
        "--json", "--out", "{p}-plan-paper.json", on=BOTH),
    # ---- query and serve ---------------------------------------------------------------------
    cli("query-text", "query", "{p}-idx", "--text", "{text}", "-k", "5", "--device", "cpu",
        on=BOTH),
    cli("query-task-json", "query", "s-idx", "--text", "{text}", "--task", "{task}", "-k",
        "3", "--device", "cpu", "--json", on=("shapes",)),
    cli("query-hybrid", "query", "s-idx", "--bm25", "s-bm25", "--text", "{text}", "-k",
        "4", "--device", "cpu", "--json", on=("shapes",)),
    cli("query-image", "query", "{p}-idx", "--image", "{image}", "--modality", "image", "-k",
        "3", "--device", "cpu", "--json", on=BOTH),
    cli("query-file", "query", "s-idx", "--file", "inputs/queries.jsonl", "--out",
        "s-query.jsonl", "--run", "s-query.run", "-k", "4", "--device", "cpu"),
    cli("query-enhanced", "query", "s-idx", "--image", "{image}", "--text",
        "what is shown?", "--enhancer-model", "tiny", "--enhancer-config",
        "configs/enhance-tiny.yaml", "-k", "3", "--device", "cpu", "--json", on=("shapes",)),
    cli("query-error-pool", "query", "{p}-idx", "--pool", "nope", "--text", "x", on=BOTH),
    Step("serve", ("serve", "{p}-idx", "--bm25", "{p}-bm25", "--port", "{port}", "--device",
                   "cpu", "--max-k", "20"), datasets=BOTH, kind="serve",
         requests=SERVE_REQUESTS),
    # ---- the experiment (a reduced copy of configs/quickstart.yaml) -------------------------
    cli("experiment", "experiment", "configs/quickstart-small.yaml", "--out", "exp", "--data",
        "shapes"),
    cli("experiment-rerun", "experiment", "configs/quickstart-small.yaml", "--out", "exp",
        "--data", "shapes"),
    cli("report-experiment", "report", "exp", "--no-plots", "--samples", "500"),
    # ---- errors: exit codes and messages -------------------------------------------------
    cli("error-unknown-config-key", "embed", "shapes", "--out", "x-emb", "--config",
        "inputs/bad.yaml", "--encoder", "tiny", "--device", "cpu"),
    cli("error-missing-run", "evaluate", "missing.run", "--qrels", "{qrels}", on=("shapes",)),
    cli("error-bad-choice", "enhance", "shapes", "--out", "x-enh", "--side", "nope"),
    cli("error-missing-dir", "mbeir", "validate", "no-such-dir"),
    cli("error-bad-set", "train", "configs/train-tiny.yaml", "--set", "no_such_key=1"),
)

# Commands the list leaves out on purpose (command path -> reason); printed by ``record``.
NOT_COVERED: dict[str, str] = {}

# The reduced quickstart: (pattern, replacement) applied to TREE/configs/quickstart.yaml, each
# must match exactly once; training runs a few steps. The experiment runs on the rendered
# shapes sample (--data shapes: the same renderer, seed 0, and files with the fixed mtime; a
# sample rendered inside the run would get run-dependent mtimes, and every later fingerprint
# hashes them), whose test split the CLI steps already enhanced into the shared store.
QUICKSTART_EDITS = (
    (r"(?m)^(\s*max_steps:\s*)30\b", r"\g<1>4"),
    (r"(?m)^(\s*save_every:\s*)10\b", r"\g<1>2"),
    (r"(?m)^(\s*log_every:\s*)10\b", r"\g<1>2"),
)

# ---- normalisation ----------------------------------------------------------------------------
VOLATILE_KEYS = (  # masked only when the value is a float or a masked date, never an int
    "seconds", "build_seconds", "exact_seconds", "approx_seconds", "elapsed", "took_ms",
    "created", "started", "finished", "tokens_per_s", "rows_per_s", "items_per_s",
    "samples_per_s",
)
MTIME_KEYS = ("mtime", "mtime_ns", "source_mtime_ns")  # file modification times
VERSION_KEYS = (  # masked only when the value looks like a version (digits and dots)
    "faiss_version", "bm25s_version", "torch_version", "transformers_version",
    "numpy_version", "python_version", "open_clip_version", "vllm_version", "ray_version",
    "torch", "transformers", "vllm", "numpy", "open_clip", "python",
)
_VALUE = (r"""(?:-?\d+\.\d+(?:[eE][-+]?\d+)?|-?\d+[eE][-+]?\d+|"[^"\n]*<DATE>[^"\n]*"|"""
          r"""'[^'\n]*<DATE>[^'\n]*'|<DATE>)""")
_VERSION = r"""(?:"\d+\.\d+[^"\n]*"|'\d+\.\d+[^'\n]*'|\d+\.\d+\.\d+[\w.+-]*)"""
_ISO_DATE = (r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
             r"(?:Z|[+-]\d{2}:?\d{2})?\b")
_RATE_UNITS = r"(?:rows|tok|tokens|samples|items|it|queries|vectors|docs|q|img|images|B|kB|MB)"
_TABLE_VOLATILE_HEADER = re.compile(r"(?:/s\b|\bseconds?\b|\btime\b|\belapsed\b|\beta\b)",
                                    re.IGNORECASE)


@dataclass(frozen=True)
class Mask:
    """One masking rule: ``pattern`` replaced by ``repl`` in text outputs."""

    name: str
    pattern: str
    repl: str
    what: str
    streams_only: bool = False  # stdout, stderr and HTTP bodies, not files


MASKS: tuple[Mask, ...] = (
    Mask("date", _ISO_DATE, "<DATE>", "ISO 8601 dates and times"),
    Mask("volatile-key",
         r"""(?P<k>(?P<q>["']?)\b(?:""" + "|".join(VOLATILE_KEYS)
         + r""")\b(?P=q)\s*[:=]\s*)""" + _VALUE,
         r"\g<k><MASKED>",
         "values of timing/rate/date/process keys: " + ", ".join(VOLATILE_KEYS)),
    Mask("mtime-key",
         r"""(?P<k>(?P<q>["']?)\b(?:""" + "|".join(MTIME_KEYS)
         + r""")\b(?P=q)\s*[:=]\s*)-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?""",
         r"\g<k><MASKED>", "file modification times: values of keys " + ", ".join(MTIME_KEYS)),
    Mask("version-key",
         r"""(?P<k>(?P<q>["']?)\b(?:""" + "|".join(VERSION_KEYS)
         + r""")\b(?P=q)\s*[:=]\s*)""" + _VERSION,
         r"\g<k><VERSION>",
         "installed package versions under keys: " + ", ".join(VERSION_KEYS)),
    Mask("rate", r"\b\d[\d,]*(?:\.\d+)?\s?" + _RATE_UNITS + r"/s\b", "<RATE>",
         "rates in stdout/stderr (N rows/s, tok/s, it/s...)", streams_only=True),
    Mask("duration", r"(?<=\bin )\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds|min|minutes)\b|"
         r"\b\d+:\d{2}:\d{2}\b|\b\d+(?:\.\d+)?s(?= elapsed\b)|(?<=\()\d+(?:\.\d+)?\s?(?:ms|s)"
         r"(?=\))", "<DURATION>", "durations in stdout/stderr (in 3.2s, (0.1s), 0:00:05)",
         streams_only=True),
    Mask("port", r"(?P<h>\b(?:127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\]):)\d+", r"\g<h><PORT>",
         "loopback ports"),
    Mask("pid", r"(?P<h>\bprocess \[)\d+(?=\])", r"\g<h><PID>", "server process ids"),
)

# Cache files named by a hash of a source's path, size and mtime (augret.data.lookup).
MTIME_KEYED_NAMES = r"cache/pool-offsets/[0-9a-f]+\.npz"

# Hashes that are run-dependent by construction, and how each is handled:
# (file regex, key regex, treatment, why). The first rule whose file and key match a value
# decides; the value is then replaced wherever it appears in the recording (logs included).
# "mask": replaced by <VOLATILE-HASH>. "alias": replaced by <Hn>, numbered in order of first
# appearance, so equal values stay equal and distinct ones distinct: only the digits go.
VOLATILE_HASHES: tuple[tuple[str, str, str, str], ...] = (
    (r"(^|/)runs\.json$", "fingerprint", "mask",
     "search skip records hash the index's 'created' time, a date of one-second resolution, "
     "so two of them are equal or not by chance (augret.index.runs)"),
    (r"^exp/conditions/", "fingerprint|config_hash|embedding_config_hash|queries|pools|"
     "embeddings|index|runs|dense|bm25", "alias",
     "the experiment trains and embeds in one process: the embedding config hash covers the "
     "checkpoint's path, size and mtime (augret.encode.embed), written seconds earlier; the "
     "pipeline's query fingerprint covers the mtimes of the enhanced files the same run "
     "wrote; each later fingerprint of a condition covers those"),
)

# Inherent volatility that no setting controls, and how each is handled.
INHERENT = {
    "zip archives (.npz, torch .pt)": "numpy's savez stamps each entry with the time it was "
                                      "written: hashed by member names and contents, in "
                                      "archive order",
    "SQLite files (generation store)": "each row holds its 'created' time: hashed by the rows "
                                       "of each table in rowid order, 'created' masked",
    "cache/pool-offsets/<key>.npz": "named by a hash of the pool's path, size and mtime "
                                    "(pools written inside one process keep a run-dependent "
                                    "mtime): named '<mtime-keyed>' + the content hash",
}


class Normaliser:
    """Masks the volatile parts of a text (see the module docstring)."""

    def __init__(self, workspace: Path, tree: Path) -> None:
        self.paths: list[tuple[str, str]] = []
        for p, token in ((workspace, "<WS>"), (tree, "<TREE>")):
            for variant in {str(p), str(p.resolve())}:
                self.paths.append((variant, token))
        self.paths.sort(key=lambda pt: -len(pt[0]))
        self.rules = [(m.name, re.compile(m.pattern), m.repl, m.streams_only) for m in MASKS]
        self.aliases: dict[str, str] = {}
        self.n_alias = 0
        self.volatile = [(re.compile(f), re.compile(
            r"""["']?\b(?:""" + k + r""")\b["']?\s*[:=]\s*["']?(?P<v>[0-9a-f]{8,64})\b"""), how)
            for f, k, how, _ in VOLATILE_HASHES]

    def collect_aliases(self, rel: str, s: str) -> None:
        """Register the values of :data:`VOLATILE_HASHES` fields in file ``rel``."""
        for file_rx, value_rx, how in self.volatile:
            if not file_rx.search(rel):
                continue
            for m in value_rx.finditer(s):
                v = m.group("v")
                if v in self.aliases:
                    continue
                if how == "mask":
                    self.aliases[v] = "<VOLATILE-HASH>"
                else:
                    self.n_alias += 1
                    self.aliases[v] = f"<H{self.n_alias}>"

    def text(self, s: str, extra: Iterable[tuple[str, str]] = (), *, stream: bool = False
             ) -> tuple[str, dict[str, int]]:
        """Normalised text and how many substitutions each rule made.

        ``stream``: ``s`` is a command's stdout/stderr or an HTTP body (the running-text
        rules and rich table handling apply only there).
        """
        counts: dict[str, int] = {}
        for old, new in [*self.paths, *extra]:
            n = s.count(old)
            if n:
                s = s.replace(old, new)
                counts[new] = counts.get(new, 0) + n
        if self.aliases:
            s = re.sub(r"\b[0-9a-f]{8,64}\b", lambda m: self.aliases.get(m.group(0),
                                                                    m.group(0)), s)
            n = len(re.findall(r"<VOLATILE-HASH>|<H\d+>", s))
            if n:
                counts["volatile-hash"] = n
        for name, rx, repl, streams_only in self.rules:
            if streams_only and not stream:
                continue
            s, n = rx.subn(repl, s)
            if n:
                counts[name] = counts.get(name, 0) + n
        if stream:
            s, n = _rich_tables(s)
            if n:
                counts["rich-table-cells"] = n
        lines = s.split("\n")
        stripped = [ln.rstrip() for ln in lines]
        return "\n".join(stripped), counts


_BOX_ROW = re.compile(r"^\s*[│┃].*[│┃]\s*$")
_BOX_RULE = re.compile(r"^\s*[┏┡┗└┌├╭╰╞━─┃│┳┯┻┷╇┿┼┬┴═╪╤╧┓┩┛┘┐┤╮╯╡\s]+$")


def _rich_tables(s: str) -> tuple[str, int]:
    """Collapse rich table padding; mask cells of rate and duration columns."""
    out, volatile, n = [], set(), 0
    for line in s.split("\n"):
        if _BOX_RULE.match(line) and any(c in line for c in "━─═"):
            out.append(re.sub(r"([━─═])\1+", r"\1", line.strip()))
            continue
        if not _BOX_ROW.match(line):
            if line.strip() == "":
                volatile = set()
            out.append(line)
            continue
        sep = "┃" if "┃" in line else "│"
        cells = [c.strip() for c in line.strip()[1:-1].split(sep)]
        if sep == "┃":  # a header row
            volatile = {i for i, c in enumerate(cells) if _TABLE_VOLATILE_HEADER.search(c)}
        else:
            for i in volatile:
                if i < len(cells) and cells[i]:
                    cells[i] = "<MASKED>"
                    n += 1
        out.append(sep + sep.join(f" {c} " for c in cells) + sep)
    return "\n".join(out), n


# ---- hashing files ------------------------------------------------------------------------
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decode_text(data: bytes) -> str | None:
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _zip_digest(path: Path) -> tuple[str, str] | None:
    try:
        with zipfile.ZipFile(path) as z:
            h, listing = hashlib.sha256(), []
            for info in z.infolist():  # archive order is part of the output
                data = z.read(info)
                h.update(info.filename.encode() + b"\x00" + _sha(data).encode() + b"\n")
                listing.append(f"{info.filename} {len(data)} {_sha(data)}")
            return h.hexdigest(), "\n".join(listing) + "\n"
    except (zipfile.BadZipFile, OSError):
        return None


def _sqlite_dump(path: Path) -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("", "-wal"):
            src = Path(str(path) + suffix)
            if src.exists():
                shutil.copyfile(src, Path(tmp) / ("db" + suffix))
        try:
            con = sqlite3.connect(Path(tmp) / "db")
            try:
                lines = []
                tables = [r[0] for r in con.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
                for t in tables:
                    sql = con.execute("SELECT sql FROM sqlite_master WHERE name=?",
                                      (t,)).fetchone()[0]
                    lines.append(f"-- {sql}")
                    cur = con.execute(f'SELECT * FROM "{t}" ORDER BY rowid')
                    cols = [d[0] for d in cur.description]
                    for row in cur:
                        vals = ["<MASKED>" if c == "created" else v for c, v in zip(cols, row,
                                                                              strict=True)]
                        lines.append(json.dumps(vals, ensure_ascii=False))
                return "\n".join(lines) + "\n"
            finally:
                con.close()
        except sqlite3.DatabaseError:
            return None


@dataclass
class Recorder:
    """Runs the steps of one tree into ``out`` and writes the manifest."""

    tree: Path
    out: Path
    workspace: Path
    python: str
    mscoco: Path = DEFAULT_MSCOCO
    only: tuple[str, ...] = ()
    steps: list[dict[str, Any]] = field(default_factory=list)
    norm: Normaliser = field(init=False)
    snapshot: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.norm = Normaliser(self.workspace, self.tree)

    # -- environment ------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        keep = {k: os.environ[k] for k in ("PATH", "HOME", "USER", "TMPDIR") if k in os.environ}
        return {**keep, "PYTHONPATH": str(self.tree / "src"), "PYTHONHASHSEED": "0",
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "NUMEXPR_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "AUGRET_CACHE_DIR": str(self.workspace / "cache"),
                "COLUMNS": "1000", "LINES": "100", "MPLBACKEND": "Agg", "LC_ALL": "C.UTF-8",
                "LANG": "C.UTF-8", "TZ": "UTC", "NO_COLOR": "1", "TERM": "dumb"}

    # -- workspace snapshots ----------------------------------------------------------------
    def _scan(self) -> dict[str, tuple[int, int, int]]:
        state = {}
        for root, dirs, files in os.walk(self.workspace):
            dirs.sort()
            for name in files:
                p = Path(root) / name
                try:
                    st = p.lstat()
                except FileNotFoundError:
                    continue
                state[p.relative_to(self.workspace).as_posix()] = (st.st_size, st.st_mtime_ns,
                                                                   st.st_ino)
        return state

    def _changes(self) -> tuple[list[str], list[str]]:
        now = self._scan()
        changed = sorted(k for k, v in now.items() if self.snapshot.get(k) != v)
        removed = sorted(k for k in self.snapshot if k not in now)
        self.snapshot = now
        return changed, removed

    # -- recording one output -----------------------------------------------------------------
    def _keep(self, key: str, text: str) -> str | None:
        data = text.encode("utf-8")
        if len(data) > KEEP_BYTES:
            return None
        rel = Path("files") / key
        dest = self.out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return rel.as_posix()

    def _text_record(self, key: str, text: str, extra: Iterable[tuple[str, str]] = (), *,
                     stream: bool = False) -> dict[str, Any]:
        norm, counts = self.norm.text(text, extra, stream=stream)
        rec: dict[str, Any] = {"kind": "text", "sha256": _sha(norm.encode("utf-8")),
                               "lines": norm.count("\n") + (0 if norm.endswith("\n") else 1)}
        if counts:
            rec["masked"] = counts
        copy = self._keep(key, norm)
        if copy:
            rec["copy"] = copy
        return rec

    def _file_record(self, step: str, rel: str, seen: dict[str, Any]
                     ) -> tuple[str, dict[str, Any]]:
        """The manifest name of workspace file ``rel`` and its record."""
        path = self.workspace / rel
        if path.is_symlink():
            target = os.readlink(path)
            norm, _ = self.norm.text(target)
            return rel, {"kind": "symlink", "target": norm}
        data = path.read_bytes()
        name = rel
        if re.fullmatch(MTIME_KEYED_NAMES, rel):
            digest = _zip_digest(path)
            content = digest[0] if digest else _sha(data)
            name = f"{rel.rsplit('/', 1)[0]}/<mtime-keyed>{content[:16]}{Path(rel).suffix}"
            n = 2
            while name in seen:  # the same content under two keys
                name = f"{name.split('#')[0]}#{n}"
                n += 1
        key = f"{step}/ws/{name.replace('<', '_').replace('>', '_')}"
        if data[:16] == b"SQLite format 3\x00":
            dump = _sqlite_dump(path)
            if dump is not None:
                return name, {**self._text_record(key, dump), "kind": "sqlite-rows"}
        if data[:4] == b"PK\x03\x04":
            digest = _zip_digest(path)
            if digest is not None:
                rec = {"kind": "zip-members", "sha256": digest[0], "size": len(data)}
                copy = self._keep(key + ".members", digest[1])
                if copy:
                    rec["copy"] = copy
                return name, rec
        text = _decode_text(data)
        if text is not None and not rel.endswith(".npy"):
            return name, self._text_record(key, text)
        return name, {"kind": "binary", "sha256": _sha(data), "size": len(data)}

    # -- running ------------------------------------------------------------------------------
    @staticmethod
    def _fill(s: str, values: dict[str, str]) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), s)

    def _args(self, step: Step, values: dict[str, str]) -> list[str]:
        args = step.args
        for path, alt_args in step.alt:
            if (self.tree / path).exists():
                args = alt_args
                break
        return [self._fill(a, values) for a in args]

    def run_all(self) -> None:
        if self.workspace.exists():
            _rmtree(self.workspace)
        self.workspace.mkdir(parents=True)
        if self.out.exists():
            _rmtree(self.out)
        self.out.mkdir(parents=True)
        t0 = time.monotonic()
        self.snapshot = self._scan()
        for step, ds in expand(STEPS):
            key = f"{ds}/{step.name}" if ds else step.name
            if self.only and not any(re.search(o, key) for o in self.only) \
                    and step.kind != "setup" and not step.required:
                continue
            values = {**(DATASETS.get(ds, {})), "port": "0"}
            t = time.monotonic()
            if step.kind == "setup":
                run = self._setup(step, values)
            elif step.kind == "serve":
                run = self._serve(step, values)
            else:
                run = self._cli(step, values)
            changed, removed = self._changes()
            for rel in changed:  # first the run-dependent hashes, wherever they appear later
                path = self.workspace / rel
                if not path.is_symlink() and any(f.search(rel) for f, _, _ in self.norm.volatile):
                    text = _decode_text(path.read_bytes())
                    if text is not None:
                        self.norm.collect_aliases(rel, text)
            files: dict[str, Any] = {}
            for rel in changed:
                name, frec = self._file_record(_safe(key), rel, files)
                files[name] = frec
            rec = self._streams(key, run)
            rec.update(name=key, kind=step.kind, files=files, removed=removed,
                       seconds=round(time.monotonic() - t, 2))
            self._settle(changed)
            self.steps.append(rec)
            print(f"{time.monotonic() - t0:7.1f}s  {key:45s} exit={rec.get('exit_code')} "
                  f"files={len(files)} ({rec['seconds']:.1f}s)", flush=True)
        self.total = round(time.monotonic() - t0, 1)

    def _settle(self, changed: list[str]) -> None:
        """Give the files a step wrote the fixed mtime (later fingerprints hash mtimes)."""
        for rel in changed:
            path = self.workspace / rel
            if not path.is_symlink():
                os.utime(path, ns=(FIXED_MTIME_NS, FIXED_MTIME_NS))
        self.snapshot = self._scan()

    def _streams(self, key: str, run: dict[str, Any]) -> dict[str, Any]:
        """The step record: raw stdout, stderr and HTTP bodies normalised."""
        extra = run.pop("extra", [])
        rec = {k: v for k, v in run.items() if k not in ("stdout", "stderr", "http")}
        for stream in ("stdout", "stderr"):
            if stream in run:
                rec[stream] = self._text_record(f"{_safe(key)}/{stream}",
                                                _lossy(run[stream]), extra, stream=True)
        if "http" in run:
            rec["http"] = []
            for i, (meta, data) in enumerate(run["http"]):
                text = _decode_text(data)
                body = self._text_record(f"{_safe(key)}/http-{i:02d}-{meta['request']}",
                                         text, extra, stream=True) if text is not None else \
                    {"kind": "binary", "sha256": _sha(data), "size": len(data)}
                rec["http"].append({**meta, "body": body})
        return rec

    def _cli(self, step: Step, values: dict[str, str]) -> dict[str, Any]:
        argv = self._args(step, values)
        try:
            proc = subprocess.run([self.python, "-m", "augret", *argv], cwd=self.workspace,
                                  env=self.env(), capture_output=True, timeout=step.timeout,
                                  stdin=subprocess.DEVNULL)
            code: Any = proc.returncode
            stdout, stderr = proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            code, stdout, stderr = "timeout", exc.stdout or b"", exc.stderr or b""
        return {"argv": argv, "exit_code": code, "stdout": stdout, "stderr": stderr}

    def _serve(self, step: Step, values: dict[str, str]) -> dict[str, Any]:
        port = _free_port()
        values = {**values, "port": str(port)}
        argv = self._args(step, values)
        shown = [a if a != str(port) else "<PORT>" for a in argv]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([self.python, "-m", "augret", *argv], cwd=self.workspace,
                                    env=self.env(), stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL)
            responses: list[tuple[dict[str, Any], bytes]] = []
            try:
                base = f"http://127.0.0.1:{port}"
                up = _wait_up(base + "/healthz", proc, step.timeout)
                for req in step.requests if up else ():
                    responses.append(self._request(base, req, values))
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                try:
                    code: Any = proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    code = "killed"
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        return {"argv": shown, "exit_code": code, "started": up, "http": responses,
                "stdout": stdout, "stderr": stderr, "extra": [(f":{port}", ":<PORT>")]}

    def _request(self, base: str, req: Request, values: dict[str, str]
                 ) -> tuple[dict[str, Any], bytes]:
        headers: dict[str, str] = {}
        body: bytes | None = None
        image = (self.workspace / self._fill(req.image, values)).read_bytes() \
            if req.image else None
        if req.form is not None:
            boundary = "augretgoldenboundary"
            parts = []
            for k, v in req.form.items():
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"'
                             f"\r\n\r\n{self._fill(v, values)}\r\n".encode())
            if image is not None:
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                             f'filename="query.bin"\r\nContent-Type: application/octet-stream'
                             f"\r\n\r\n".encode() + image + b"\r\n")
            body = b"".join(parts) + f"--{boundary}--\r\n".encode()
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        elif req.json is not None:
            payload = json.loads(self._fill(json.dumps(req.json), values))
            if image is not None:
                import base64

                payload = {**payload, "image": base64.b64encode(image).decode()}
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        elif req.method == "POST":
            body, headers["Content-Type"] = b"text", "text/plain"
        r = urllib.request.Request(base + self._fill(req.path, values), data=body,
                                   headers=headers, method=req.method)
        try:
            with urllib.request.urlopen(r, timeout=120) as resp:
                status, ctype, data = resp.status, resp.headers.get("content-type"), resp.read()
        except urllib.error.HTTPError as exc:
            status, ctype, data = exc.code, exc.headers.get("content-type"), exc.read()
        return {"request": req.name, "method": req.method, "path": self._fill(req.path, values),
                "status": status, "content_type": ctype}, data

    def _setup(self, step: Step, values: dict[str, str]) -> dict[str, Any]:
        action, *args = [self._fill(a, values) for a in step.args]
        SETUP_ACTIONS[action](self, *args)
        return {"argv": [action, *args], "exit_code": 0}

    # -- help walk and the manifest -----------------------------------------------------------
    def walk_help(self) -> tuple[list[str], dict[str, Any]]:
        """Every command path under ``augret --help`` (groups included) and its help text."""
        found, records, todo = [], {}, [[]]
        while todo:
            path = todo.pop(0)
            proc = subprocess.run([self.python, "-m", "augret", *path, "--help"],
                                  cwd=self.workspace, env=self.env(), capture_output=True,
                                  timeout=120)
            text = _lossy(proc.stdout)
            name = " ".join(path) or "augret"
            records[name] = {"exit_code": proc.returncode,
                             **self._text_record(f"help/{_safe(name)}", text, stream=True)}
            found.append(name)
            for sub in _subcommands(text):
                todo.append([*path, sub])
        return found, records

    def write_manifest(self, commands: list[str], helps: dict[str, Any]) -> None:
        covered = {" ".join(_command_path(list(step.args), commands))
                   for step in STEPS if step.kind in ("cli", "serve")}
        leaves = [c for c in commands if c != "augret" and not any(
            o.startswith(c + " ") for o in commands)]
        missing = [c for c in leaves if c not in covered]
        print("\nCLI commands (from --help): " + ", ".join(leaves))
        for c in missing:
            print(f"NOT COVERED: augret {c}: {NOT_COVERED.get(c, 'no step runs it')}")
        if not missing:
            print("every CLI command is covered by at least one step")
        manifest = {
            "format": FORMAT, "tree": str(self.tree), "tree_commit": _git_head(self.tree),
            "python": self.python, "workspace": str(self.workspace), "env": self.env(),
            "masks": {"paths": {"<WS>": "the workspace's absolute path",
                                "<TREE>": "the tree's absolute path"},
                      **{m.name: m.what for m in MASKS},
                      "rich-table-cells": "rich table padding collapsed; cells under a "
                                          "rate/duration header masked",
                      "trailing-whitespace": "stripped at line ends"},
            "controlled": {"fixed_mtime_ns": FIXED_MTIME_NS,
                           "mtimes": "every file a step writes gets fixed_mtime_ns after it",
                           "workspace": "fixed path (hashed into fingerprints)"},
            "volatile_hashes": [{"files": f, "keys": k, "treatment": how, "why": why}
                                for f, k, how, why in VOLATILE_HASHES],
            "inherent": INHERENT, "commands": leaves, "not_covered": {
                c: NOT_COVERED.get(c, "no step runs it") for c in missing},
            "help": helps, "steps": self.steps, "seconds": self.total,
        }
        (self.out / "manifest.json").write_text(json.dumps(manifest, indent=1,
                                                           ensure_ascii=False) + "\n")


def _command_path(argv: list[str], commands: list[str]) -> list[str]:
    words: list[str] = []
    for a in argv:
        if a.startswith("-"):
            if words:
                break
            continue
        if " ".join([*words, a]) in commands:
            words.append(a)
        else:
            break
    return words


def _subcommands(help_text: str) -> list[str]:
    out, inside = [], False
    for line in help_text.splitlines():
        if line.strip() == "Commands:":
            inside = True
            continue
        if inside:
            m = re.match(r"^  (\S+)", line)
            if m:
                out.append(m.group(1))
            elif line and not line.startswith(" "):
                inside = False
    return out


def expand(steps: Iterable[Step]) -> Iterator[tuple[Step, str]]:
    """Each step once per data set it names (or once, with no data set)."""
    for step in steps:
        for ds in step.datasets or ("",):
            yield step, ds


# ---- set-up actions ---------------------------------------------------------------------
def _copy_tree(src: Path, dest: Path) -> None:
    """Copy contents only (the source may be read-only; copies are writable)."""
    for dirpath, dirs, files in os.walk(src):
        dirs.sort()
        rel = Path(dirpath).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            shutil.copyfile(Path(dirpath) / name, dest / rel / name)


def _copy_configs(rec: Recorder) -> None:
    _copy_tree(rec.tree / "configs", rec.workspace / "configs")
    text = (rec.workspace / "configs" / "quickstart.yaml").read_text()
    for pattern, repl in QUICKSTART_EDITS:
        text, n = re.subn(pattern, repl, text)
        if n != 1:
            raise SystemExit(f"quickstart.yaml: {pattern!r} matched {n} times; update "
                             "QUICKSTART_EDITS")
    (rec.workspace / "configs" / "quickstart-small.yaml").write_text(text)


def _copy_mscoco(rec: Recorder, dest: str) -> None:
    if not rec.mscoco.is_dir():
        raise SystemExit(f"{rec.mscoco}: not found (pass --mscoco)")
    _copy_tree(rec.mscoco, rec.workspace / dest)


def _make_inputs(rec: Recorder) -> None:
    """Collection sources, a query file and a config with an unknown key, from the data."""
    ws = rec.workspace
    inp = ws / "inputs"
    photos = inp / "photos"
    (photos / "more").mkdir(parents=True)
    coco = sorted((ws / "mscoco" / "mbeir_images").rglob("*.jpg"))[:4]
    shapes = sorted((ws / "shapes" / "mbeir_images").rglob("*.png"))[:4]
    for i, src in enumerate(coco + shapes):
        dest = (photos if i % 2 == 0 else photos / "more") / src.name
        shutil.copyfile(src, dest)
        if i % 3 == 0:
            dest.with_suffix(".txt").write_text(f"caption number {i}: {src.stem}\n")
    (photos / "notes.md").write_text("not an image\n")
    rows = [("a1", "a red circle on white", f"photos/{shapes[0].name}"),
            ("a2", "two dogs on a bed", ""),
            ("", "a blue square", f"photos/more/{shapes[1].name}"),
            ("9:77", "text only item", "")]
    with (inp / "items.csv").open("w", newline="") as f:
        f.write("id,text,image\n")
        for r in rows:
            f.write(",".join(f'"{c}"' if "," in c else c for c in r) + "\n")
    with (inp / "items.jsonl").open("w") as f:
        for key, text, image in rows:
            f.write(json.dumps({"key": key or None, "caption": text,
                                "picture": image or None}) + "\n")
    with (inp / "queries.jsonl").open("w") as f:
        f.write(json.dumps({"qid": "q1", "text": "a red circle"}) + "\n")
        f.write(json.dumps({"qid": "q2", "text": "a dog", "task": "mscoco_task0"}) + "\n")
        f.write(json.dumps({"qid": "q3", "image": "../shapes/mbeir_images/shapes_images/"
                                                  "00001_green_circle.png"}) + "\n")
    (inp / "bad.yaml").write_text("encoder: tiny\nno_such_key: 1\n")


SETUP_ACTIONS: dict[str, Callable[..., None]] = {
    "copy-configs": _copy_configs,
    "copy-mscoco": _copy_mscoco,
    "make-inputs": _make_inputs,
}


# ---- small helpers ------------------------------------------------------------------------
def _lossy(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_")[:120] or "_"


def _rmtree(path: Path) -> None:
    def onerror(func: Callable[..., Any], p: str, _exc: Any) -> None:
        os.chmod(p, 0o700)
        func(p)

    shutil.rmtree(path, onerror=onerror)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=5):
                return True
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.3)
    return False


def _git_head(tree: Path) -> str | None:
    try:
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


@contextlib.contextmanager
def _locked(workspace: Path) -> Iterator[None]:
    lock = workspace.with_name(workspace.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another record using {workspace} ...", flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


# ---- compare -------------------------------------------------------------------------------
def _load(d: Path) -> dict[str, Any]:
    return json.loads((d / "manifest.json").read_text())


def _read_copy(d: Path, rec: dict[str, Any] | None) -> list[str] | None:
    if not rec or "copy" not in rec:
        return None
    return (d / rec["copy"]).read_text("utf-8").splitlines(keepends=True)


def _diff(a_dir: Path, b_dir: Path, a: dict[str, Any], b: dict[str, Any], label: str,
          max_lines: int) -> str:
    la, lb = _read_copy(a_dir, a), _read_copy(b_dir, b)
    if la is None or lb is None:
        return "    (no copy kept: binary or large)\n"
    diff = _crop(list(difflib.unified_diff(la, lb, f"A/{label}", f"B/{label}", n=1)))
    shown = diff[:max_lines]
    text = "".join(line if line.endswith("\n") else line + "\n" for line in shown)
    if len(diff) > max_lines:
        text += f"    ... {len(diff) - max_lines} more diff lines\n"
    return "".join("    " + line + "\n" for line in text.splitlines())


def _crop(diff: list[str], width: int = 220) -> list[str]:
    """Shorten long diff lines: -/+ pairs to a window around where they first differ."""
    out = list(diff)
    i = 0
    while i < len(out):
        j = i
        while j < len(out) and out[j].startswith("-") and not out[j].startswith("---"):
            j += 1
        k = j
        while k < len(out) and out[k].startswith("+") and not out[k].startswith("+++"):
            k += 1
        for a, b in zip(range(i, j), range(j, k), strict=False):
            la, lb = out[a], out[b]
            if max(len(la), len(lb)) > width:
                p = next((n for n, (x, y) in enumerate(zip(la, lb, strict=False)) if x != y),
                         min(len(la), len(lb)))
                lo = max(1, p - width // 3)
                for idx, line in ((a, la), (b, lb)):
                    out[idx] = (line[0] + ("…" if lo > 1 else "") + line[lo:lo + width].rstrip("\n")
                                + ("…" if len(line) > lo + width else "") + "\n")
        i = max(k, i + 1)
    return [line if len(line) <= width + 8 else line[:width] + "…\n" for line in out]


def _same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    keys = ("kind", "sha256", "target", "masked")
    return all(a.get(k) == b.get(k) for k in keys)


def _what(a: dict[str, Any], b: dict[str, Any]) -> str:
    if a.get("kind") != b.get("kind"):
        return f"kind {a.get('kind')} -> {b.get('kind')}"
    if a.get("sha256") != b.get("sha256") or a.get("target") != b.get("target"):
        return f"content ({a.get('kind')})"
    return f"masked counts {a.get('masked')} -> {b.get('masked')}"


def compare(a_dir: Path, b_dir: Path, exclude: tuple[str, ...], max_lines: int) -> int:
    """Print what differs between two recordings; 1 when anything does."""
    a, b = _load(a_dir), _load(b_dir)
    skip = [re.compile(x) for x in exclude]

    def keep(name: str) -> bool:
        return not any(x.search(name) for x in skip)

    rows: list[tuple[str, str, str, str]] = []  # command, file, what, diff
    a_steps = {s["name"]: s for s in a["steps"]}
    b_steps = {s["name"]: s for s in b["steps"]}
    for name in [n for n in a_steps if n not in b_steps]:
        if keep(name):
            rows.append((name, "", "command only in A", ""))
    for name in [n for n in b_steps if n not in a_steps]:
        if keep(name):
            rows.append((name, "", "command only in B", ""))
    notes = []
    for name, sa in a_steps.items():
        sb = b_steps.get(name)
        if sb is None or not keep(name):
            continue
        if sa.get("argv") != sb.get("argv"):
            notes.append(f"{name}: argv A {sa.get('argv')} / B {sb.get('argv')}")
        if sa.get("exit_code") != sb.get("exit_code"):
            rows.append((name, "", f"exit code {sa.get('exit_code')} -> {sb.get('exit_code')}",
                         ""))
        for stream in ("stdout", "stderr"):
            if not _same(sa.get(stream), sb.get(stream)):
                rows.append((name, f"<{stream}>", _what(sa[stream], sb[stream]),
                             _diff(a_dir, b_dir, sa[stream], sb[stream], stream, max_lines)))
        ha = {r["request"]: r for r in sa.get("http", [])}
        hb = {r["request"]: r for r in sb.get("http", [])}
        for req in sorted(set(ha) | set(hb)):
            ra, rb = ha.get(req), hb.get(req)
            if ra is None or rb is None:
                rows.append((name, f"<http {req}>", "request only in " + ("A" if rb is None
                                                                          else "B"), ""))
                continue
            if (ra["status"], ra["content_type"]) != (rb["status"], rb["content_type"]):
                rows.append((name, f"<http {req}>", f"status {ra['status']} "
                             f"{ra['content_type']} -> {rb['status']} {rb['content_type']}",
                             ""))
            if not _same(ra["body"], rb["body"]):
                rows.append((name, f"<http {req}>", _what(ra["body"], rb["body"]),
                             _diff(a_dir, b_dir, ra["body"], rb["body"], req, max_lines)))
        fa, fb = sa.get("files", {}), sb.get("files", {})
        for f in sorted(set(fa) | set(fb)):
            if not keep(f"{name}:{f}"):
                continue
            if f not in fb:
                rows.append((name, f, "file only in A", ""))
            elif f not in fa:
                rows.append((name, f, "file only in B", ""))
            elif not _same(fa[f], fb[f]):
                rows.append((name, f, _what(fa[f], fb[f]),
                             _diff(a_dir, b_dir, fa[f], fb[f], f, max_lines)))
        ra_, rb_ = set(sa.get("removed", [])), set(sb.get("removed", []))
        for f in sorted(ra_ ^ rb_):
            rows.append((name, f, "removed only in " + ("A" if f in ra_ else "B"), ""))
    ha, hb = a.get("help", {}), b.get("help", {})
    for cmd in sorted(set(ha) | set(hb)):
        name = f"help/{cmd}"
        if not keep(name):
            continue
        if cmd not in ha or cmd not in hb:
            rows.append((name, "", "help only in " + ("A" if cmd in ha else "B"), ""))
        elif not _same(ha[cmd], hb[cmd]) or ha[cmd]["exit_code"] != hb[cmd]["exit_code"]:
            rows.append((name, "<stdout>", _what(ha[cmd], hb[cmd]),
                         _diff(a_dir, b_dir, ha[cmd], hb[cmd], cmd, max_lines)))
    print(f"A: {a_dir} (tree {a.get('tree')} @ {a.get('tree_commit')}, {len(a_steps)} steps)")
    print(f"B: {b_dir} (tree {b.get('tree')} @ {b.get('tree_commit')}, {len(b_steps)} steps)")
    for n in notes:
        print("note: " + n)
    if not rows:
        print("identical: every command, exit code, output and file matches")
        return 0
    w1 = max(len(r[0]) for r in rows)
    w2 = min(70, max(len(r[1]) for r in rows))
    print(f"\n{'command':{w1}}  {'file':{w2}}  what differs")
    print(f"{'-' * w1}  {'-' * w2}  {'-' * 20}")
    for cmd, f, what, _ in rows:
        print(f"{cmd:{w1}}  {f:{w2}}  {what}")
    print()
    for cmd, f, what, diff in rows:
        if diff:
            print(f"== {cmd} {f}: {what}")
            print(diff, end="")
    print(f"{len(rows)} difference(s)")
    return 1


# ---- entry point -------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="run every step on TREE and write OUT/manifest.json")
    rec.add_argument("--tree", type=Path, required=True, help="checkout whose src/ to run")
    rec.add_argument("--out", type=Path, required=True, help="recording directory (replaced)")
    rec.add_argument("--workspace", type=Path, default=DEFAULT_WORKSPACE,
                     help="where commands run (replaced; keep it fixed: absolute paths are "
                          "hashed into augret's fingerprints) [default: %(default)s]")
    rec.add_argument("--python", default=DEFAULT_PYTHON, help="[default: %(default)s]")
    rec.add_argument("--mscoco", type=Path, default=DEFAULT_MSCOCO.resolve(),
                     help="the mbeir-mini-mscoco directory [default: %(default)s]")
    rec.add_argument("--keep-workspace", action="store_true",
                     help="leave the workspace in place (for debugging)")
    rec.add_argument("--only", action="append", default=[],
                     help="regex on step names (repeatable; set-up steps always run)")
    cmp_ = sub.add_parser("compare", help="print the outputs that differ; exit 1 if any")
    cmp_.add_argument("a", type=Path)
    cmp_.add_argument("b", type=Path)
    cmp_.add_argument("--exclude", action="append", default=[],
                      help="regex on step names (or 'step:file') to leave out, e.g. '^help/'")
    cmp_.add_argument("--diff-lines", type=int, default=40, help="[default: %(default)s]")
    lst = sub.add_parser("list", help="print the steps")
    del lst
    args = parser.parse_args(argv)
    if args.cmd == "compare":
        return compare(args.a, args.b, tuple(args.exclude), args.diff_lines)
    if args.cmd == "list":
        for step, ds in expand(STEPS):
            print(f"{ds + '/' if ds else ''}{step.name:40s} {step.kind:6s} "
                  f"{' '.join(step.args)}")
        return 0
    tree = args.tree.resolve()
    if not (tree / "src" / "augret").is_dir():
        parser.error(f"{tree}: no src/augret")
    workspace = args.workspace.absolute()
    with _locked(workspace):
        r = Recorder(tree, args.out.resolve(), workspace, args.python, args.mscoco,
                     tuple(args.only))
        r.run_all()
        commands, helps = r.walk_help()
        r.write_manifest(commands, helps)
        if not args.keep_workspace:
            _rmtree(workspace)
    print(f"\nrecorded {len(r.steps)} steps of {tree} into {args.out} in {r.total:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
