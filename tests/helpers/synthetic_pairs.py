"""A small synthetic text-to-text retrieval task in M-BEIR's layout, for learning tests.

36 candidates (6 colours × 6 things, ``"{thing} coloured {colour}"``); training queries ask for
each of them in several phrasings, validation queries in a phrasing of their own. Chance hit@1
of the validation is 1/36.
"""

from __future__ import annotations

import json
from pathlib import Path

COLOURS = ("red", "blue", "green", "yellow", "black", "white")
THINGS = ("cube", "sphere", "car", "bird", "tower", "bridge")
TRAIN_PHRASES = ("a {c} {t}", "the {t} that is {c}", "find a {c} {t}", "{c} {t} please")
VAL_PHRASE = "what is the {c} {t}"

TRAIN_FILE = "query/union_train/mbeir_union_up_train.jsonl"
POOL_FILE = "cand_pool/global/mbeir_union_train_cand_pool.jsonl"
VAL_FILE = "query/test/mbeir_webqa_task1_test.jsonl"
CHANCE = 1 / (len(COLOURS) * len(THINGS))


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")


def write_pairs(root: Path) -> Path:
    """Write the task under ``root`` (train queries, the pool, validation queries)."""
    combos = [(c, t) for c in COLOURS for t in THINGS]
    pool = [{"txt": f"{t} coloured {c}", "img_path": None, "modality": "text",
             "did": f"2:{i + 1}", "src_content": None} for i, (c, t) in enumerate(combos)]
    train, val = [], []
    for i, (c, t) in enumerate(combos):
        for j, phrase in enumerate(TRAIN_PHRASES):
            train.append({"qid": f"2:{1000 + 10 * i + j}", "query_txt": phrase.format(c=c, t=t),
                          "query_img_path": None, "query_modality": "text",
                          "query_src_content": None, "pos_cand_list": [f"2:{i + 1}"],
                          "neg_cand_list": [], "task_id": 1})
        val.append({"qid": f"2:{i + 1}", "query_txt": VAL_PHRASE.format(c=c, t=t),
                    "query_img_path": None, "query_modality": "text", "query_src_content": None,
                    "pos_cand_list": [f"2:{i + 1}"], "neg_cand_list": [], "task_id": 1})
    _write(root / TRAIN_FILE, train)
    _write(root / POOL_FILE, pool)
    _write(root / VAL_FILE, val)
    return root
