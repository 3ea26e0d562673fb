"""Evaluate a directory of M-BEIR run files against the qrels of an M-BEIR directory.

Run-file naming (both accepted, in ``RUN_DIR`` itself or in ``RUN_DIR/run_files``; the rule
is :func:`augret.data.mbeir.parse_run_file_name`):

* augret's convention: ``<task name>_<pool>.<ext>`` with pool ``local`` or ``union`` and ext
  ``run``, ``txt``, ``trec`` or ``json``, e.g. ``cirr_task7_local.run``,
  ``cirr_task7_union.run``;
* UniIR's: ``mbeir_<task name>_{single,union}_pool_test_k<k>_run.txt`` (``single`` = local).

Other files are ignored. Two files naming the same (task, pool) are an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from augret.data.ids import MBEIR_TEST_TASKS, eval_task, find_eval_task
from augret.data.mbeir import MBEIRDir, parse_run_file_name, run_file_name
from augret.data.qrels import Qrels, read_qrels
from augret.errors import ConfigError, DataNotFoundError
from augret.evaluate.metrics import EvalResult, evaluate
from augret.evaluate.runs import read_run

__all__ = ["evaluate_run_dir", "find_run_files", "run_file_name"]

log = logging.getLogger(__name__)


def find_run_files(run_dir: str | Path) -> dict[tuple[str, str], Path]:
    """The run files of ``run_dir`` by ``(task name, pool)``, in UniIR's row order.

    Raises:
        DataNotFoundError: ``run_dir`` is not a directory.
        ConfigError: Two files name the same (task, pool).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataNotFoundError(f"{run_dir}: no such directory")
    found: dict[tuple[str, str], Path] = {}
    for folder in (run_dir, run_dir / "run_files"):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            key = parse_run_file_name(path.name)
            if key is None or not path.is_file():
                continue
            if find_eval_task(key[0]) is None:
                log.warning("%s: %s is not an M-BEIR test task; skipped", path, key[0])
                continue
            if key in found:
                raise ConfigError(f"two run files for {key[0]} ({key[1]}): {found[key]} and "
                                  f"{path}")
            found[key] = path
    order = {t.name: i for i, t in enumerate(MBEIR_TEST_TASKS)}
    return dict(sorted(found.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])))


def evaluate_run_dir(
    data_dir: str | Path,
    run_dir: str | Path,
    *,
    metrics: Iterable[str] | None = None,
    per_query: bool = False,
) -> dict[tuple[str, str], EvalResult]:
    """Evaluate every run file of ``run_dir`` against its task's qrels in ``data_dir``.

    Each task gets ``hit@k`` for its UniIR k values (1, 5, 10; or 10, 20, 50 for Fashion200K
    and FashionIQ), which include the reported metric, plus ``metrics`` when given. The same
    qrels serve the local and the union run, as in UniIR.

    Args:
        data_dir: An M-BEIR directory (UniIR's or Anserini's layout, see
            :class:`augret.data.MBEIRDir`).
        run_dir: The run files (see the module docstring for their names).
        metrics: Extra metrics for every task.
        per_query: Keep per-query scores (needed to compare two run directories).

    Raises:
        DataNotFoundError: A directory is missing, or ``run_dir`` holds no run file.
    """
    data = MBEIRDir(data_dir)
    runs = find_run_files(run_dir)
    if not runs:
        raise DataNotFoundError(
            f"{run_dir}: no run file named <task>_<local|union>.run or "
            f"mbeir_<task>_<single|union>_pool_test_k<k>_run.txt")
    qrels_cache: dict[str, Qrels | None] = {}
    out: dict[tuple[str, str], EvalResult] = {}
    for (name, pool), path in runs.items():
        task = eval_task(name)
        if name not in qrels_cache:
            qrels_path = data.qrels_file(name)
            if qrels_path is None:
                log.warning("%s: no test qrels for %s; its runs are skipped", data.root, name)
            qrels_cache[name] = read_qrels(qrels_path) if qrels_path is not None else None
        qrels = qrels_cache[name]
        if qrels is None:
            continue
        wanted = [f"hit@{k}" for k in task.metric_ks] + list(metrics or [])
        out[name, pool] = evaluate(qrels, read_run(path), wanted, per_query=per_query)
        log.info("%s (%s): %s = %.4f over %d queries", name, pool, task.reported_metric,
                 out[name, pool].metrics[task.reported_metric], out[name, pool].num_queries)
    return out
