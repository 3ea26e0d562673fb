"""Synthetic run directories and enhanced copies of the shapes sample (report, viewer and
training tests).

Runs are deterministic: a query's positive is ranked first when a seeded draw falls below
the task's hit rate, otherwise it is left out of the top k. So two conditions with clearly
different rates differ significantly even on the sample's 36 queries per task.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Mapping
from pathlib import Path

from augret.data import MBEIRDir, iter_candidates, iter_jsonl, write_jsonl
from augret.evaluate import write_run
from augret.evaluate.rundir import run_file_name


def write_condition_runs(data_dir: Path, run_dir: Path, rates: Mapping[str, float], *,
                         default: float = 0.5, seed: int = 0, depth: int = 10,
                         pools: tuple[str, ...] = ("local", "union")) -> Path:
    """Write ``<task>_<pool>.run`` for every test task of ``data_dir``.

    Args:
        data_dir: An M-BEIR directory with queries, pools and qrels.
        run_dir: Output folder.
        rates: Hit rate per task name (probability that a positive is ranked first).
        default: Rate of tasks not in ``rates``.
        seed: Seed of the draws (the same seed draws the same queries as hits).
        depth: Documents per query.
        pools: Which pool runs to write.
    """
    d = MBEIRDir(data_dir)
    union = [c.did for path in d.union_pool_files() for c in iter_candidates(path)]
    run_dir.mkdir(parents=True, exist_ok=True)
    for tf in d.tasks():
        qrels = d.qrels(tf.task.name)
        local = [c.did for c in iter_candidates(tf.pool)] if tf.pool else union
        rate = rates.get(tf.task.name, default)
        for pool in pools:
            dids = local if pool == "local" else union
            run = {}
            for qid in qrels.judgments:
                rng = random.Random(f"{seed}:{qid}")
                draw = rng.random()
                rel = set(qrels.positives(qid))
                others = [x for x in dids if x not in rel]
                rng.shuffle(others)
                ranked = ([sorted(rel)[0]] if draw < rate else []) + others
                ranked = ranked[:depth]
                run[qid] = {did: float(depth - i) for i, did in enumerate(ranked)}
            write_run(run_dir / run_file_name(tf.task.name, pool), run)
    return run_dir


def write_enhanced_copy(data_dir: Path, out_dir: Path) -> Path:
    """An enhanced-directory look-alike: every query and pool row rewritten (``ENH:`` texts),
    originals kept in ``query_txt_raw`` / ``txt_raw``, images left in the source tree."""
    d = MBEIRDir(data_dir)
    for path in sorted((d.root / "query" / "test").glob("*.jsonl")):
        rows = []
        for _, obj in iter_jsonl(path):
            raw = obj.get("query_txt")
            obj["query_txt_raw"] = raw
            if obj.get("query_img_path"):
                obj["query_txt"] = f"ENH rewrite of: {raw or 'image-only query'}"
                obj["enhancement"] = {"task": "synthetic", "status": "ok"}
            else:
                obj["enhancement"] = {"task": "passthrough", "status": "passthrough"}
            rows.append(obj)
        write_jsonl(out_dir / path.relative_to(d.root), rows)
    for path in sorted((d.root / "cand_pool" / "local").glob("*.jsonl")):
        rows = []
        for _, obj in iter_jsonl(path):
            obj["txt_raw"] = obj.get("txt")
            if obj.get("img_path"):
                obj["txt"] = f"ENH caption of {Path(obj['img_path']).stem.split('_', 1)[-1]}"
            rows.append(obj)
        write_jsonl(out_dir / path.relative_to(d.root), rows)
    for sub in ("qrels", "instructions"):
        target = out_dir / sub
        if not target.exists():
            target.symlink_to((d.root / sub).resolve(), target_is_directory=True)
    (out_dir / "augret.json").write_text(json.dumps(
        {"image_root": str(d.image_root.resolve()), "source": str(d.root.resolve())}), "utf-8")
    return out_dir


def write_enhanced_train_copy(sample_dir: Path, dst: Path) -> Path:
    """An enhanced-layout copy of the train split: ``ENHANCED ...`` texts, originals in
    ``*_raw``, images read from the source tree."""
    for rel, key in (("query/union_train/mbeir_union_up_train.jsonl", "query_txt"),
                     ("cand_pool/global/mbeir_union_train_cand_pool.jsonl", "txt")):
        rows = [json.loads(x) for x in (sample_dir / rel).read_text().splitlines()]
        for r in rows:
            r[f"{key}_raw"] = r[key]
            r[key] = f"ENHANCED {r[key] or 'caption'}"
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.copytree(sample_dir / "instructions", dst / "instructions")
    (dst / "augret.json").write_text(json.dumps({"image_root": str(sample_dir)}))
    return dst
