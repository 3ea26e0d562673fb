"""A small, license-clean M-BEIR-layout sample that augret renders itself.

"Shapes world": coloured shapes on plain backgrounds, rendered as PNG by
:func:`augret.data.png.write_png` (CC0: the project made them). Six test tasks mirror M-BEIR's
task types under M-BEIR's file names, so every stage runs on it exactly as on the real data:

=====================  ==========================  =======================================
file stem              task                        what it asks
=====================  ==========================  =======================================
``mscoco_task0``       qt→ci                       caption → image
``webqa_task1``        qt→ct                       question → fact
``mscoco_task3``       qi→ct                       image → caption
``nights_task4``       qi→ci                       image → the same shape and colour
``oven_task8``         (qi,qt)→(ci,ct)             "what is this called?" + image → entity
``cirr_task7``         (qi,qt)→ci                  image + "make it blue" → edited image
=====================  ==========================  =======================================

The train split (``query/union_train/mbeir_union_up_train.jsonl`` with its union train pool)
uses new renderings (other sizes, positions, backgrounds) of the same concepts. Dataset ids
follow M-BEIR's table so that the instruction file applies; the contents are synthetic.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from augret.data.ids import eval_task
from augret.data.jsonl import write_jsonl
from augret.data.png import write_png
from augret.data.qrels import Qrels, write_qrels
from augret.data.text import format_string

__all__ = ["SampleSummary", "write_sample"]

SHAPES = {
    "circle": "A circle is a round shape with no corners and no straight sides.",
    "square": "A square has four equal straight sides and four right angles.",
    "triangle": "A triangle is a polygon with three corners and three straight sides.",
    "diamond": "A diamond is a square turned on its corner, with four equal sides.",
    "cross": "A cross is made of two bars that meet at right angles in the middle.",
    "ring": "A ring is a circle with a round hole in its middle.",
}
QUESTIONS = {  # shape -> questions answered by its fact (test, then train paraphrases)
    "circle": ["Which shape has no corners?", "What shape is perfectly round?"],
    "square": ["Which shape has four right angles?", "What shape has four equal sides?"],
    "triangle": ["Which shape has three sides?", "What polygon has three corners?"],
    "diamond": ["What is a square turned on its corner called?",
                "Which shape looks like a tilted square?"],
    "cross": ["Which shape is made of two crossing bars?",
              "What shape do two perpendicular bars make?"],
    "ring": ["Which shape has a hole in the middle?", "What is a circle with a hole called?"],
}
ENTITY_QUESTIONS = ["What is this shape called?", "How many corners does this have?",
                    "Which shape is this?", "What kind of figure is shown?"]
COLORS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (235, 210, 40), "purple": (140, 60, 180), "orange": (240, 140, 30),
}
BACKGROUNDS = {"white": (250, 250, 250), "gray": (128, 128, 128), "black": (15, 15, 15)}
SIZE = 96


@dataclass
class SampleSummary:
    """What :func:`write_sample` wrote."""

    root: Path
    images: int = 0
    queries: dict[str, int] = field(default_factory=dict)
    pools: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Look:
    shape: str
    color: str
    background: str
    large: bool
    dx: int
    dy: int

    def caption(self, variant: int = 0) -> str:
        size = "large" if self.large else "small"
        templates = (
            f"A {size} {self.color} {self.shape} on a {self.background} background",
            f"{self.color} {self.shape} drawn on plain {self.background}",
            f"A {self.background} picture showing one {size} {self.color} {self.shape}",
        )
        return format_string(templates[variant % len(templates)])


def _render(look: _Look) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    cx, cy = SIZE / 2 + look.dx, SIZE / 2 + look.dy
    r = SIZE * (0.36 if look.large else 0.22)
    ax, ay = np.abs(x - cx), np.abs(y - cy)
    dist = np.hypot(x - cx, y - cy)
    mask = {
        "circle": dist < r,
        "ring": (dist < r) & (dist > 0.55 * r),
        "square": (ax < r * 0.85) & (ay < r * 0.85),
        "diamond": ax + ay < r,
        "cross": ((ax < r / 3) & (ay < r)) | ((ay < r / 3) & (ax < r)),
        "triangle": (y < cy + r * 0.8) & (y > cy - r) & (ax < (y - (cy - r)) * 0.58),
    }[look.shape]
    img = np.empty((SIZE, SIZE, 3), np.uint8)
    img[:] = BACKGROUNDS[look.background]
    img[mask] = COLORS[look.color]
    return img


class _Writer:
    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.next_did: dict[int, int] = {}
        self.next_qid: dict[tuple[int, str], int] = {}
        self.images: dict[_Look, str] = {}

    def look(self, shape: str, color: str, background: str | None = None) -> _Look:
        r = self.rng
        return _Look(shape, color, background or r.choice(list(BACKGROUNDS)),
                     r.random() < 0.5, r.randint(-8, 8), r.randint(-8, 8))

    def image(self, look: _Look) -> str:
        if look not in self.images:
            rel = (f"mbeir_images/shapes_images/{len(self.images):05d}_"
                   f"{look.color}_{look.shape}.png")
            write_png(self.root / rel, _render(look))
            self.images[look] = rel
        return self.images[look]

    def did(self, dataset: int) -> str:
        self.next_did[dataset] = self.next_did.get(dataset, 0) + 1
        return f"{dataset}:{self.next_did[dataset]}"

    def qid(self, dataset: int, split: str) -> str:
        key = (dataset, split)
        self.next_qid[key] = self.next_qid.get(key, 0) + 1
        return f"{dataset}:{self.next_qid[key]}"

    def cand(self, dataset: int, txt: str | None, look: _Look | None) -> dict:
        img = self.image(look) if look is not None else None
        modality = "image,text" if txt and img else ("image" if img else "text")
        return {"txt": txt, "img_path": img, "modality": modality, "did": self.did(dataset),
                "src_content": None}

    def query(self, dataset: int, split: str, txt: str | None, look: _Look | None,
              pos: list[str], task_id: int, neg: list[str] | None = None) -> dict:
        img = self.image(look) if look is not None else None
        modality = "image,text" if txt and img else ("image" if img else "text")
        return {"qid": self.qid(dataset, split), "query_txt": txt, "query_img_path": img,
                "query_modality": modality, "query_src_content": None, "pos_cand_list": pos,
                "neg_cand_list": neg or [], "task_id": task_id}


def _tasks(w: _Writer, split: str, reps: int) -> dict[str, tuple[list[dict], list[dict]]]:
    """Queries and pool of each task for one split."""
    r = w.rng
    combos = [(s, c) for s in SHAPES for c in COLORS]
    out: dict[str, tuple[list[dict], list[dict]]] = {}
    q_variant = 0 if split == "test" else 1

    # caption <-> image (mscoco-like)
    looks = [w.look(s, c) for _ in range(reps) for s, c in combos]
    pool0 = [w.cand(9, None, lk) for lk in looks]
    out["mscoco_task0"] = ([w.query(9, split, lk.caption(r.randrange(3)), None, [p["did"]], 0)
                            for lk, p in zip(looks, pool0, strict=True)], pool0)
    looks3 = [w.look(s, c) for _ in range(reps) for s, c in combos]
    pool3, q3 = [], []
    for lk in looks3:
        caps = [w.cand(9, lk.caption(v), None) for v in range(2)]
        pool3 += caps
        q3.append(w.query(9, split, None, lk, [c["did"] for c in caps], 3))
    out["mscoco_task3"] = (q3, pool3)

    # question -> fact (webqa-like)
    facts = {s: w.cand(2, format_string(f), None) for s, f in SHAPES.items()}
    out["webqa_task1"] = ([w.query(2, split, format_string(QUESTIONS[s][q_variant]), None,
                                   [facts[s]["did"]], 1) for s in SHAPES], list(facts.values()))

    # image -> same shape and colour (nights-like)
    pool4, q4 = [], []
    for s, c in combos * reps:
        pos = w.cand(4, None, w.look(s, c))
        neg = w.cand(4, None, w.look(s, r.choice([x for x in COLORS if x != c])))
        pool4 += [pos, neg]
        q4.append(w.query(4, split, None, w.look(s, c), [pos["did"]], 4, [neg["did"]]))
    out["nights_task4"] = (q4, pool4)

    # image + question -> entity entry (oven-like): needs the image to know the entity
    entities = {s: w.cand(5, format_string(f"{s.capitalize()}. {f}"), w.look(s, "blue", "white"))
                for s, f in SHAPES.items()}
    q8 = [w.query(5, split, format_string(r.choice(ENTITY_QUESTIONS)), w.look(s, c),
                  [entities[s]["did"]], 8) for s, c in combos]
    out["oven_task8"] = (q8, list(entities.values()))

    # image + modification -> edited image (cirr-like)
    targets = {(s, c): w.cand(8, None, w.look(s, c, "white")) for s, c in combos}
    q7 = []
    for s, c in combos:
        new = r.choice([x for x in COLORS if x != c])
        text = r.choice([f"Make it {new} instead of {c}", f"Same shape but {new}",
                         f"Change the colour to {new}"])
        q7.append(w.query(8, split, format_string(text), w.look(s, c, "white"),
                          [targets[(s, new)]["did"]], 7))
    out["cirr_task7"] = (q7, list(targets.values()))
    return out


def write_sample(out_dir: str | Path, *, seed: int = 0, reps: int = 1,
                 train_reps: int = 3) -> SampleSummary:
    """Render the shapes-world sample as an M-BEIR directory.

    Args:
        out_dir: Target directory (created; an existing sample there is replaced).
        seed: Seed of every random choice; the same seed writes the same files.
        reps: Renderings per (shape, colour) in the test split's image tasks.
        train_reps: The same for the train split.

    Returns:
        Counts of what was written.
    """
    root = Path(out_dir)
    for sub in ("query", "cand_pool", "qrels", "mbeir_images", "instructions"):
        shutil.rmtree(root / sub, ignore_errors=True)
    w = _Writer(root, seed)
    summary = SampleSummary(root)
    train_queries: list[dict] = []
    train_pool: list[dict] = []
    for split, n in (("test", reps), ("train", train_reps)):
        for name, (queries, pool) in _tasks(w, split, n).items():
            task = eval_task(name)
            if split == "test":
                write_jsonl(root / "query/test" / f"mbeir_{name}_test.jsonl", queries)
                write_jsonl(root / "cand_pool/local" / f"mbeir_{task.pool}_cand_pool.jsonl", pool)
                qrels = Qrels({q["qid"]: dict.fromkeys(q["pos_cand_list"], 1) for q in queries},
                              {q["qid"]: q["task_id"] for q in queries})
                write_qrels(root / "qrels/test" / f"mbeir_{name}_test_qrels.txt", qrels)
                summary.queries[name] = len(queries)
                summary.pools[task.pool] = len(pool)
            else:
                train_queries += queries
                train_pool += pool
    w.rng.shuffle(train_queries)
    write_jsonl(root / "query/union_train/mbeir_union_up_train.jsonl", train_queries)
    write_jsonl(root / "cand_pool/global/mbeir_union_train_cand_pool.jsonl", train_pool)
    summary.queries["union_train"] = len(train_queries)
    summary.pools["union_train"] = len(train_pool)
    (root / "instructions").mkdir(parents=True, exist_ok=True)
    tsv = resources.files("augret.data.resources").joinpath("query_instructions.tsv")
    (root / "instructions/query_instructions.tsv").write_text(tsv.read_text("utf-8"), "utf-8")
    (root / "README.md").write_text(
        "# augret shapes-world sample\n\nSynthetic M-BEIR-layout data rendered by "
        "`augret mbeir sample` (images CC0, made by augret; instructions from UniIR, MIT). "
        "Dataset names in file names only mark the task type; the contents are synthetic.\n",
        "utf-8")
    (root / "sample.json").write_text(json.dumps(
        {"seed": seed, "reps": reps, "train_reps": train_reps, "queries": summary.queries,
         "pools": summary.pools, "images": len(w.images)}, indent=2) + "\n", "utf-8")
    summary.images = len(w.images)
    return summary
