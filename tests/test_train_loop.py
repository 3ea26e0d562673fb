"""Training with the tiny encoder on the shapes sample: learning, exact resume, checkpoints,
data views, bad examples, the CLI, and 2-process DDP against 1 process."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")


from augret.config import load_config  # noqa: E402
from augret.encode import EmbedConfig, embed_dir, load_encoder  # noqa: E402
from augret.errors import ConfigError, DataNotFoundError  # noqa: E402
from augret.train import TrainConfig, train  # noqa: E402
from augret.train.data import EpochBatches, TrainData  # noqa: E402
from helpers.mbeir_runs import write_enhanced_train_copy  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "configs" / "train-tiny.yaml"


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = {"data.dir": str(data), "output_dir": str(out), "progress": False,
            "log_every": 1, "val.file": "", "batch_size": 8}
    return load_config(TrainConfig, TINY_YAML, {**base, **kw})


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_resume_reproduces_the_loss_curve(sample_dir: Path, tmp_path: Path) -> None:
    full = tmp_path / "full"
    train(_cfg(sample_dir, full, max_steps=6, save_every=3))
    part = tmp_path / "part"
    train(_cfg(sample_dir, part, max_steps=3, save_every=3))
    assert sorted(_losses(part)) == [1, 2, 3]
    summary = train(_cfg(sample_dir, part, max_steps=6, save_every=3, resume=True))
    assert summary["step"] == 6
    a, b = _losses(full), _losses(part)
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=1e-6), step
    ckpt = part / "checkpoints"
    assert (ckpt / "latest").read_text().strip() == "step_0000006"
    assert sorted(p.name for p in (ckpt / "step_0000006").iterdir()) == [
        "config.yaml", "encoder.json", "model.pt", "rng_rank0.pt", "trainer.pt"]
    trainer = torch.load(ckpt / "step_0000006" / "trainer.pt", weights_only=True)
    assert set(trainer) == {"optimizer", "scheduler", "scaler", "logit_scale", "position"}
    assert trainer["position"]["step"] == 6
    # the trained weights load as an encoder, from the run directory or the checkpoint
    a_vec = load_encoder(str(part), device="cpu").model.clip_model.visual.proj
    b_vec = load_encoder(str(full / "final"), device="cpu").model.clip_model.visual.proj
    torch.testing.assert_close(a_vec, b_vec)
    with pytest.raises(ConfigError, match="differs"):
        train(_cfg(sample_dir, part, max_steps=8, resume=True, batch_size=4))
    with pytest.raises(DataNotFoundError, match="no checkpoint"):
        train(_cfg(sample_dir, tmp_path / "none", resume=True))


def test_training_learns_the_shapes_task(sample_dir: Path, tmp_path: Path) -> None:
    """hit@1 of caption→image retrieval (36 candidates, chance 1/36) rises well above chance."""
    out = tmp_path / "run"
    cfg = _cfg(sample_dir, out, max_steps=70, batch_size=32, log_every=5,
               **{"val.file": "query/test/mbeir_mscoco_task0_test.jsonl", "val.every": 70,
                  "val.pool": "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl"})
    from augret.train.families import build_train_model
    from augret.train.loop import _build_check
    from augret.train.validate import run_check

    model = build_train_model(cfg, torch.device("cpu"))
    check = _build_check(cfg, TrainData(cfg.data, model.processor, cfg.seed), model)
    before = run_check(model.module, model.processor, check, device=model.device,
                       autocast=model.autocast)
    train(cfg)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    after = next(r for r in rows if "val_hit@1" in r)
    chance = 1 / 36
    assert before["hit@1"] <= 3 * chance
    assert after["val_hit@1"] >= 4 * chance, after
    assert after["val_hit@5"] >= 0.5, after
    assert np.mean(losses[-3:]) < 0.75 * losses[0], losses
    assert {"step", "loss", "lr", "logit_scale", "samples_per_s"} <= set(rows[0])


def test_views_positives_and_instructions_are_seeded(sample_dir: Path, tmp_path: Path) -> None:
    enh = write_enhanced_train_copy(sample_dir, tmp_path / "enh")
    enc = load_encoder("tiny", device="cpu")
    cfg = _cfg(sample_dir, tmp_path / "x", **{"data.enhanced_dir": str(enh)}).data
    raw = TrainData(cfg, enc.processor, seed=1)
    e1, e2 = raw.example((5, 0)), raw.example((5, 0))
    assert (e1.pos_id, e1.query.text) == (e2.pos_id, e2.query.text)  # keyed by seed, epoch, i
    assert "ENHANCED" not in e1.query.text
    cfg = dataclasses.replace(cfg, view="enhanced")
    enhanced = TrainData(cfg, enc.processor, seed=1)
    texts = [enhanced.example((i, 0)) for i in range(20)]
    assert all("ENHANCED" in e.query.text for e in texts if e.query.text)
    cfg = dataclasses.replace(cfg, view="mix", mix_ratio=0.5)
    mixed = TrainData(cfg, enc.processor, seed=1)
    views = [mixed.example((i, 0)).view for i in range(200)]
    assert 60 < views.count("enhanced") < 140
    ex = mixed.example((3, 0))
    assert ("ENHANCED" in ex.positive.text) == (ex.view == "enhanced") or not ex.positive.text
    prompts = {mixed.example((0, epoch)).query.text for epoch in range(12)}
    assert len(prompts) > 1  # a random instruction per example and epoch, as UniIR
    order = EpochBatches(402, 8, rank=0, world=1, seed=1)
    assert order.batches(2, 5) == order.batches(2)[5:]
    assert order.batches(2) != order.batches(3)


def test_hard_negatives_train(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = _cfg(sample_dir, out, max_steps=2, **{"data.hard_negatives": 1})
    enc = load_encoder("tiny", device="cpu")
    data = TrainData(cfg.data, enc.processor, cfg.seed)
    with_negs = [i for i in range(len(data)) if data.example((i, 0)).neg_ids][:8]
    assert with_negs  # the nights-like queries carry a dataset negative
    (batch,), info = data.collate([data.example((i, 0)) for i in with_negs])
    assert len(batch) == 3 * len(with_negs) and bool(info.neg_valid.all())
    summary = train(cfg)
    assert summary["step"] == 2 and np.isfinite(summary["loss"])


def _break_one_image(sample_dir: Path, dst: Path) -> tuple[Path, str]:
    """16 training queries; the positive of one of them has a missing image."""
    shutil.copytree(sample_dir / "instructions", dst / "instructions")
    pool = sample_dir / "cand_pool/global/mbeir_union_train_cand_pool.jsonl"
    rows = [json.loads(x) for x in pool.read_text().splitlines()]
    victim = next(r for r in rows if r["img_path"])
    victim["img_path"] = "mbeir_images/missing.png"
    out = dst / "cand_pool/global/mbeir_union_train_cand_pool.jsonl"
    out.parent.mkdir(parents=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    qfile = sample_dir / "query/union_train/mbeir_union_up_train.jsonl"
    queries = [json.loads(x) for x in qfile.read_text().splitlines()]
    bad = [q for q in queries if q["pos_cand_list"] == [victim["did"]]][:1]
    keep = bad + [q for q in queries if victim["did"] not in q["pos_cand_list"]][:15]
    q_out = dst / "query/union_train/mbeir_union_up_train.jsonl"
    q_out.parent.mkdir(parents=True)
    q_out.write_text("".join(json.dumps(q) + "\n" for q in keep))
    (dst / "augret.json").write_text(json.dumps({"image_root": str(sample_dir)}))
    return dst, bad[0]["qid"]


def test_bad_training_examples_fail_or_are_recorded(sample_dir: Path, tmp_path: Path) -> None:
    data, qid = _break_one_image(sample_dir, tmp_path / "data")
    with pytest.raises(DataNotFoundError, match=rf"{qid}: positive .*missing\.png"):
        train(_cfg(data, tmp_path / "err", max_steps=2))  # one epoch: every example seen
    out = tmp_path / "skip"
    train(_cfg(data, out, max_steps=2, **{"data.on_bad_example": "skip"}))
    skipped = [json.loads(x) for x in (out / "skipped_rank0.jsonl").read_text().splitlines()]
    assert [s["qid"] for s in skipped] == [qid]
    assert "missing.png" in skipped[0]["reason"]
    assert len(_losses(out)) == 2


def test_cli_train_and_embed_the_result(sample_dir: Path, tmp_path: Path, capsys) -> None:
    from augret.cli.main import main

    out = tmp_path / "run"
    args = ["train", str(TINY_YAML), "--data", str(sample_dir), "--output-dir", str(out),
            "--max-steps", "2", "--batch-size", "8", "--no-progress", "--set", "val.file=",
            "--set", "log_every=1"]
    assert main(args) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert len(_losses(out)) == 2
    assert (out / "config.yaml").is_file() and (out / "final" / "model.pt").is_file()
    assert main([*args, "--max-steps", "3", "--resume"]) == 0
    assert sorted(_losses(out)) == [1, 2, 3]
    capsys.readouterr()
    assert main([*args, "--set", "optim.learning_rate=1"]) == ConfigError.exit_code
    assert "unknown key" in capsys.readouterr().err
    emb = tmp_path / "emb"
    assert main(["embed", str(sample_dir), "--encoder", str(out), "--out", str(emb),
                 "--tasks", "webqa_task1", "--workers", "0", "--device", "cpu",
                 "--no-progress", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["encoder"]["name"] == str(out)
    assert set(meta["entries"]) == {"queries/webqa_task1", "pools/webqa_task1"}
    assert main(["embed", str(sample_dir), "--encoder", "no-such-encoder",
                 "--out", str(tmp_path / "e2")]) == ConfigError.exit_code


def _ddp_worker(rank: int, world: int, port: int, cfg: TrainConfig) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    train(cfg)


def test_two_process_ddp_matches_one_process(sample_dir: Path, tmp_path: Path,
                                             free_port: int) -> None:
    """gloo DDP with 2 × 8 queries and gathered candidates = 1 process with 16 queries."""
    one = tmp_path / "one"
    torch.set_num_threads(1)
    train(_cfg(sample_dir, one, max_steps=3, batch_size=16))
    two = tmp_path / "two"
    cfg2 = _cfg(sample_dir, two, max_steps=3, batch_size=8)
    torch.multiprocessing.start_processes(_ddp_worker, args=(2, free_port, cfg2),
                                          nprocs=2, start_method="spawn")
    a, b = _losses(one), _losses(two)
    assert sorted(a) == sorted(b) == [1, 2, 3]
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=2e-4), (step, a, b)
    for r in (0, 1):
        assert (two / "checkpoints" / "step_0000003" / f"rng_rank{r}.pt").is_file()
    # and the embeddings of the two final models agree
    e1 = embed_dir(sample_dir, tmp_path / "e1", EmbedConfig(
        encoder=str(one), tasks=["webqa_task1"], workers=0, device="cpu"), progress=False)
    e2 = embed_dir(sample_dir, tmp_path / "e2", EmbedConfig(
        encoder=str(two), tasks=["webqa_task1"], workers=0, device="cpu"), progress=False)
    from augret.formats.embeddings import read_entry

    _, v1 = read_entry(tmp_path / "e1" / "pools/webqa_task1")
    _, v2 = read_entry(tmp_path / "e2" / "pools/webqa_task1")
    np.testing.assert_allclose(v1.astype(np.float32), v2.astype(np.float32), atol=2e-2)
    assert e1["dim"] == e2["dim"] == 64
