"""A small, license-clean M-BEIR-layout sample that augret renders itself.

"Shapes world": coloured shapes on plain backgrounds, rendered as PNG by
:func:`augret.data.png.write_png` (CC0: the project made them). Six test tasks mirror M-BEIR's
task types under M-BEIR's file names, so every stage runs on it exactly as on the real data.

As on M-BEIR, the raw texts leave out evidence that only the images carry (*silent
evidence*): a retriever must read it from the pixels, or a VLM must write it down first.

Each task, what it asks, and the evidence its raw text hides:

* ``mscoco_task0`` (qt→ci), caption → image: the candidates are bare images.
* ``webqa_task1`` (qt→ct), "Which emblem did the weavers of Harrow adopt?" → the emblem's
  fact: nothing is hidden; text only on both sides, so enhancement leaves it unchanged (a
  built-in check: its differences between conditions are training noise).
* ``mscoco_task3`` (qi→ct), image → its captions: the query is a bare image.
* ``nights_task4`` (qi→ci), image → another rendering of the same shape and colour: both
  sides are bare images, and the distractor differs from the target only in colour.
* ``cirr_task7`` ((qi,qt)→ci), image + "Same shape, but blue" / "Turn it into a ring" → the
  edited image: the instruction names only the change, never what stays (the shape, or the
  colour); only the reference image shows it.
* ``oven_task8`` ((qi,qt)→(ci,ct)), image + "What is this emblem called?" → the emblem's
  entry: the question never names its subject, and the entries name the emblem and its shape
  but never the colour of their picture.

The 36 *emblems* (every shape × colour) are invented heraldry of six guilds in six towns;
``webqa_task1`` asks about their facts and ``oven_task8`` shows their pictures.

The renderer knows every scene: ``scenes.jsonl`` (one record per image: ``image``,
``pixels_sha256`` of its RGB pixels, ``subject``, ``keywords`` and the ground truth ``shape``,
``color``, ``size``, ``position``, ``background``, ``count``) is the ground truth that the
``reference`` enhancement backend (:mod:`augret.enhance.backends.reference`) answers from.

The train split (``query/union_train/mbeir_union_up_train.jsonl`` with its union train pool)
uses new renderings (other sizes, positions, backgrounds) and paraphrased questions of the
same concepts. Query ids count on across splits, so an id names one query of the sample.
Dataset ids follow M-BEIR's table so that the instruction file applies; the contents are
synthetic.
"""

from __future__ import annotations

import hashlib
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

__all__ = ["SCENES_FILE", "SampleSummary", "write_sample"]

#: The scene records of a rendered sample (relative to its root).
SCENES_FILE = "scenes.jsonl"

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
COLORS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (235, 210, 40), "purple": (140, 60, 180), "orange": (240, 140, 30),
}
BACKGROUNDS = {"white": (250, 250, 250), "gray": (128, 128, 128), "black": (15, 15, 15)}
SIZE = 96

# the emblems: (first word, second word) names; guilds are (trade, town) pairs
_NAME_A = ("Ash", "Brook", "Cinder", "Dawn", "Elm", "Fern", "Gale", "Heath", "Iris",
           "Juniper", "Kestrel", "Lark")
_NAME_B = ("Crest", "Sigil", "Seal")
_TRADES = ("weavers", "masons", "brewers", "coopers", "tanners", "smiths")
_TOWNS = ("Harrow", "Dunmore", "Ashby", "Calder", "Wexley", "Pellam")
_FACT_QUESTIONS = ("Which emblem did the {trade} of {town} adopt?",
                   "What emblem stands for the {town} guild of {trade}?")
_ENTITY_QUESTIONS = (("What is this emblem called?", "Which emblem is this?",
                      "What is the name of this emblem?"),
                     ("What do people call this emblem?", "Whose emblem is this?",
                      "What is this sign named?"))
_EDITS = {  # what changes -> instructions that never name what stays
    "color": ("Same shape, but {new}", "Make it {new}", "Now in {new}"),
    "shape": ("Same colour, but a {new}", "Turn it into a {new}", "As a {new} instead"),
}


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

    @property
    def size(self) -> str:
        return "large" if self.large else "small"

    @property
    def position(self) -> str:
        v = "top" if self.dy < -3 else "bottom" if self.dy > 3 else ""
        h = "left" if self.dx < -3 else "right" if self.dx > 3 else ""
        return " ".join(w for w in (v, h) if w) or "centre"

    def caption(self, variant: int = 0) -> str:
        templates = (
            f"A {self.size} {self.color} {self.shape} on a {self.background} background",
            f"{self.color} {self.shape} drawn on plain {self.background}",
            f"A {self.background} picture showing one {self.size} {self.color} {self.shape}",
        )
        return format_string(templates[variant % len(templates)])

    def scene(self, image: str, pixels: np.ndarray) -> dict:
        """The scene record of this look's image (the ground truth of ``scenes.jsonl``)."""
        subject = f"{self.color} {self.shape}"
        where = "centred" if self.position == "centre" else self.position
        return {"image": image, "pixels_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
                "subject": subject,
                "keywords": [subject, self.size, where,
                             f"plain {self.background} background"],
                "shape": self.shape, "color": self.color, "size": self.size,
                "position": self.position, "background": self.background, "count": 1}


@dataclass(frozen=True)
class _Emblem:
    name: str
    shape: str
    color: str
    trade: str
    town: str
    year: int

    @property
    def fact(self) -> str:  # never states the colour (and, for webqa, not the shape either)
        return format_string(f"{self.name}: the emblem of the {self.trade} guild of "
                             f"{self.town}, adopted in {self.year}")

    @property
    def entry(self) -> str:
        return format_string(f"{self.name}. The {self.shape} emblem of the {self.trade} of "
                             f"{self.town}, adopted in {self.year}")


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


def _emblems(rng: random.Random) -> list[_Emblem]:
    combos = [(s, c) for s in SHAPES for c in COLORS]
    guilds = [(t, w) for t in _TRADES for w in _TOWNS]
    names = [f"{a} {b}" for b in _NAME_B for a in _NAME_A]
    rng.shuffle(guilds)
    rng.shuffle(names)
    return [_Emblem(n, s, c, t, w, 1702 + 7 * i)
            for i, ((s, c), (t, w), n) in enumerate(zip(combos, guilds, names, strict=True))]


class _Writer:
    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.next_did: dict[int, int] = {}
        self.next_qid: dict[int, int] = {}
        self.images: dict[_Look, str] = {}
        self.scenes: list[dict] = []

    def look(self, shape: str, color: str, background: str | None = None) -> _Look:
        r = self.rng
        return _Look(shape, color, background or r.choice(list(BACKGROUNDS)),
                     r.random() < 0.5, r.randint(-8, 8), r.randint(-8, 8))

    def image(self, look: _Look) -> str:
        if look not in self.images:
            rel = (f"mbeir_images/shapes_images/{len(self.images):05d}_"
                   f"{look.color}_{look.shape}.png")
            pixels = _render(look)
            write_png(self.root / rel, pixels)
            self.images[look] = rel
            self.scenes.append(look.scene(rel, pixels))
        return self.images[look]

    def did(self, dataset: int) -> str:
        self.next_did[dataset] = self.next_did.get(dataset, 0) + 1
        return f"{dataset}:{self.next_did[dataset]}"

    def qid(self, dataset: int) -> str:
        self.next_qid[dataset] = self.next_qid.get(dataset, 0) + 1
        return f"{dataset}:{self.next_qid[dataset]}"

    def cand(self, dataset: int, txt: str | None, look: _Look | None) -> dict:
        img = self.image(look) if look is not None else None
        modality = "image,text" if txt and img else ("image" if img else "text")
        return {"txt": txt, "img_path": img, "modality": modality, "did": self.did(dataset),
                "src_content": None}

    def query(self, dataset: int, txt: str | None, look: _Look | None, pos: list[str],
              task_id: int, neg: list[str] | None = None) -> dict:
        img = self.image(look) if look is not None else None
        modality = "image,text" if txt and img else ("image" if img else "text")
        return {"qid": self.qid(dataset), "query_txt": txt, "query_img_path": img,
                "query_modality": modality, "query_src_content": None, "pos_cand_list": pos,
                "neg_cand_list": neg or [], "task_id": task_id}


def _tasks(w: _Writer, split: str, reps: int, emblems: list[_Emblem]
           ) -> dict[str, tuple[list[dict], list[dict]]]:
    """Queries and pool of each task for one split."""
    r = w.rng
    combos = [(s, c) for s in SHAPES for c in COLORS]
    out: dict[str, tuple[list[dict], list[dict]]] = {}
    variant = 0 if split == "test" else 1

    # caption -> image (mscoco-like): the candidates carry no text
    looks = [w.look(s, c) for _ in range(reps) for s, c in combos]
    pool0 = [w.cand(9, None, lk) for lk in looks]
    out["mscoco_task0"] = ([w.query(9, lk.caption(r.randrange(3)), None, [p["did"]], 0)
                            for lk, p in zip(looks, pool0, strict=True)], pool0)
    # image -> caption: the query carries no text
    pool3, q3 = [], []
    for lk in (w.look(s, c) for _ in range(reps) for s, c in combos):
        caps = [w.cand(9, lk.caption(v), None) for v in range(2)]
        pool3 += caps
        q3.append(w.query(9, None, lk, [c["did"] for c in caps], 3))
    out["mscoco_task3"] = (q3, pool3)

    # question -> fact (webqa-like): text only on both sides
    facts = {e.name: w.cand(2, e.fact, None) for e in emblems}
    out["webqa_task1"] = (
        [w.query(2, format_string(_FACT_QUESTIONS[variant].format(trade=e.trade, town=e.town)),
                 None, [facts[e.name]["did"]], 1) for e in emblems], list(facts.values()))

    # image -> the same shape and colour (nights-like); the distractor differs in colour only
    pool4, q4 = [], []
    for s, c in combos * reps:
        pos = w.cand(4, None, w.look(s, c))
        neg = w.cand(4, None, w.look(s, r.choice([x for x in COLORS if x != c])))
        pool4 += [pos, neg]
        q4.append(w.query(4, None, w.look(s, c), [pos["did"]], 4, [neg["did"]]))
    out["nights_task4"] = (q4, pool4)

    # image + question -> emblem entry (oven-like): the entries never state their colour
    entries = {e.name: w.cand(5, e.entry, w.look(e.shape, e.color, "white")) for e in emblems}
    q8 = [w.query(5, format_string(r.choice(_ENTITY_QUESTIONS[variant])),
                  w.look(e.shape, e.color), [entries[e.name]["did"]], 8)
          for _ in range(reps) for e in emblems]
    out["oven_task8"] = (q8, list(entries.values()))

    # image + modification -> edited image (cirr-like): the text names only the change
    targets = {(s, c): w.cand(8, None, w.look(s, c, "white")) for s, c in combos}
    q7 = []
    for s, c in combos * reps:
        what = r.choice(sorted(_EDITS))
        if what == "color":
            new = r.choice([x for x in COLORS if x != c])
            target = (s, new)
        else:
            new = r.choice([x for x in SHAPES if x != s])
            target = (new, c)
        text = r.choice(_EDITS[what]).format(new=new)
        q7.append(w.query(8, format_string(text), w.look(s, c),
                          [targets[target]["did"]], 7))
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
    emblems = _emblems(w.rng)
    summary = SampleSummary(root)
    train_queries: list[dict] = []
    train_pool: list[dict] = []
    for split, n in (("test", reps), ("train", train_reps)):
        for name, (queries, pool) in _tasks(w, split, n, emblems).items():
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
    write_jsonl(root / SCENES_FILE, w.scenes)
    summary.queries["union_train"] = len(train_queries)
    summary.pools["union_train"] = len(train_pool)
    (root / "instructions").mkdir(parents=True, exist_ok=True)
    tsv = resources.files("augret.data.resources").joinpath("query_instructions.tsv")
    (root / "instructions/query_instructions.tsv").write_text(tsv.read_text("utf-8"), "utf-8")
    (root / "README.md").write_text(
        "# augret shapes-world sample\n\nSynthetic M-BEIR-layout data rendered by "
        "`augret mbeir sample` (images CC0, made by augret; instructions from UniIR, MIT). "
        "Dataset names in file names only mark the task type; the contents are synthetic. "
        f"`{SCENES_FILE}` holds the ground truth of every image (what the `reference` "
        "enhancement backend answers from).\n", "utf-8")
    (root / "sample.json").write_text(json.dumps(
        {"seed": seed, "reps": reps, "train_reps": train_reps, "queries": summary.queries,
         "pools": summary.pools, "images": len(w.images), "scenes": SCENES_FILE},
        indent=2) + "\n", "utf-8")
    summary.images = len(w.images)
    return summary
