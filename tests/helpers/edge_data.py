"""An M-BEIR-format CIRR-like task whose images and lines cover the awkward cases."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.images import bomb_png


def _img(path: Path, color=(200, 30, 30), mode="RGB", size=(40, 30), fmt=None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else 0).save(path, format=fmt)
    return path.name


def write_rows(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for r in rows:
            f.write(r if isinstance(r, bytes) else (json.dumps(r) + "\n").encode())


def write_edge_dir(root: Path) -> Path:
    """Write the edge-case task under ``root`` and return it."""
    im = root / "mbeir_images" / "x"
    _img(im / "ok.jpg")
    _img(im / "ok_copy.jpg")  # identical bytes: one generation
    (im / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "JPEG")
    (im / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (im / "bomb.png").write_bytes(bomb_png())
    Image.new("CMYK", (20, 20), (0, 255, 0, 0)).save(im / "cmyk.jpg")
    Image.fromarray(np.arange(400, dtype=np.uint16).reshape(20, 20) * 100).save(im / "deep.png")
    Image.new("P", (20, 20), 3).save(im / "palette.png", transparency=3)
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(im / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(im / "pages.tif", save_all=True, append_images=frames[1:])
    names = ["ok.jpg", "ok_copy.jpg", "missing.jpg", "empty.jpg", "truncated.jpg", "bomb.png",
             "cmyk.jpg", "deep.png", "palette.png", "anim.gif", "pages.tif"]
    queries = [{"qid": f"8:{i + 1}", "query_txt": "Make it blue and shiny.",
                "query_img_path": f"mbeir_images/x/{n}", "query_modality": "image,text",
                "query_src_content": None, "pos_cand_list": [f"8:{i + 1}"],
                "neg_cand_list": [], "task_id": 7} for i, n in enumerate(names)]
    queries.append({**queries[0], "qid": "8:90", "query_txt": "What is this?"})
    queries.append(b"{broken json\n")
    queries.append(b'{"qid": "8:91", "query_txt": "caf\xe9", "query_img_path": null}\n')
    queries.append({**queries[0], "qid": "8:92", "query_modality": "video"})
    write_rows(root / "query/test/mbeir_cirr_task7_test.jsonl", queries)
    pool = [{"txt": None, "img_path": f"mbeir_images/x/{n}", "modality": "image",
             "did": f"8:{i + 1}", "src_content": None} for i, n in enumerate(names)]
    pool.append({"txt": "A plain text candidate.", "img_path": None, "modality": "text",
                 "did": "8:50", "src_content": None})
    write_rows(root / "cand_pool/local/mbeir_cirr_task7_cand_pool.jsonl", pool)
    (root / "qrels/test").mkdir(parents=True)
    (root / "qrels/test/mbeir_cirr_task7_test_qrels.txt").write_text("8:1 0 8:1 1 7\n")
    return root


REPEATED_POOL = "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl"


def write_repeated_images(root: Path, images: int = 30, copies: int = 5) -> Path:
    """A candidate pool of ``images × copies`` rows over ``images`` distinct images; the copies
    of an image are ``images`` rows apart, so they fall in different chunks of a run."""
    folder = root / "mbeir_images" / "rep"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        Image.new("RGB", (12, 10), (i * 8 % 256, 255 - i * 8 % 256, 90)).save(folder / f"{i}.png")
    rows = [{"txt": None, "img_path": f"mbeir_images/rep/{n % images}.png", "modality": "image",
             "did": f"0:{n + 1}", "src_content": None} for n in range(images * copies)]
    write_rows(root / REPEATED_POOL, rows)
    return root
