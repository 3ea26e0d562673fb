"""Training MLLM embedders (tiny-mllm, random weights): LoRA targets, GradCache against the
full batch in float64, learning on a synthetic task, exact resume, DDP, adapter and merged
checkpoints, data views, the CLI."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from PIL import Image  # noqa: E402

from augret.config import load_config  # noqa: E402
from augret.encode import Item, load_encoder  # noqa: E402
from augret.encode.mllm import TINY_MLLM  # noqa: E402
from augret.errors import ConfigError  # noqa: E402
from augret.train import LoraConfig, TrainConfig, train  # noqa: E402
from augret.train.data import TrainData  # noqa: E402
from augret.train.families import build_train_model  # noqa: E402
from augret.train.loss import contrastive_loss  # noqa: E402
from augret.train.mllm import MLLMTrainModel, checkpoint_activations  # noqa: E402
from augret.train.step import full_batch_step, grad_cache_step  # noqa: E402
from helpers.mbeir_runs import write_enhanced_train_copy  # noqa: E402
from helpers.synthetic_pairs import CHANCE, VAL_FILE, write_pairs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "configs" / "train-mllm-tiny.yaml"
CPU = torch.device("cpu")


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = {"data.dir": str(data), "output_dir": str(out), "progress": False,
            "log_every": 1, "val.file": "", "batch_size": 8}
    return load_config(TrainConfig, TINY_YAML, {**base, **kw})


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def _losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in _rows(out) if "loss" in r}


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))


def _tiny(lora: LoraConfig, *, learn: bool = True, seed: int = 0,
          dtype: torch.dtype = torch.float32) -> MLLMTrainModel:
    enc = load_encoder(TINY_MLLM, device="cpu")
    model = MLLMTrainModel(enc, lora=lora, temperature=0.05, learn_temperature=learn,
                           gradient_checkpointing=False, seed=seed, source=TINY_MLLM)
    model.module.to(dtype)
    with torch.no_grad():  # non-zero adapters: the gradients reach both LoRA matrices
        for name, p in model.module.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    return model


def test_lora_adapts_the_language_model_only() -> None:
    model = _tiny(LoraConfig(r=4, alpha=8, dropout=0.0))
    mods = model.lora_modules()
    assert len(mods) == 3 * 7  # 3 decoder layers x every linear layer
    pattern = re.compile(r"language_model\.layers\.\d\.(self_attn|mlp)\.[a-z_]+_proj")
    assert all(pattern.fullmatch(m) for m in mods), mods
    lora_anywhere = [n for n, m in model.module.named_modules() if hasattr(m, "lora_A")]
    assert lora_anywhere and not any("visual" in n for n in lora_anywhere)
    trainable = [n for n, p in model.module.named_parameters() if p.requires_grad]
    assert "logit_scale" in trainable
    assert all("lora_" in n for n in trainable if n != "logit_scale"), trainable
    assert not any(p.requires_grad for n, p in model.module.named_parameters()
                   if ".visual." in n)  # the vision tower and its merger are frozen
    with pytest.raises(ConfigError, match="apply to MLLM embedders"):
        build_train_model(TrainConfig(encoder="tiny", lora=LoraConfig(r=4)), CPU)


def _pairs_batch(model: MLLMTrainModel, b: int, k: int) -> tuple[list, dict]:
    """``b`` queries (text, image, both), their positives and ``k`` negatives each."""
    def item(i: int) -> Item:
        kind = i % 3
        return Item(None if kind == 1 else f"query {i} about a red cube",
                    _image(i) if kind else None,
                    instruction="Find the matching item." if i % 2 else None)

    rows = [item(i) for i in range(b)]
    rows += [Item(f"candidate {i}: a cube", _image(100 + i) if i % 2 else None)
             for i in range(b)]
    rows += [Item(f"negative {j}", None) for j in range(b * k)]
    prepared = [model.processor.prepare(it, key=i) for i, it in enumerate(rows)]
    info = {"valid": torch.tensor([True] * (b - 1) + [False]),  # one skipped example
            "neg_valid": torch.ones(b, k, dtype=torch.bool)}
    return prepared, info


def _loss_fn(emb, scale, *, b: int, k: int, info: dict):
    return contrastive_loss(emb[:b], emb[b:2 * b], scale, valid=info["valid"],
                            negatives=emb[2 * b:].reshape(b, k, -1), neg_valid=info["neg_valid"])


def _grads(model: MLLMTrainModel) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.module.named_parameters() if p.grad is not None}
    model.module.zero_grad(set_to_none=True)
    return out


def test_grad_cache_gradients_equal_the_full_batch_in_float64() -> None:
    """GradCache over uneven chunks (queries by 2, candidates by 3), with activation
    checkpointing, gives the full-batch InfoNCE gradients of every LoRA weight and of the
    temperature."""
    model = _tiny(LoraConfig(r=4, alpha=8, dropout=0.0), dtype=torch.float64)
    b, k = 5, 1
    rows, info = _pairs_batch(model, b, k)
    loss_fn = partial(_loss_fn, b=b, k=k, info=info)
    kw = {"device": CPU, "autocast": model.autocast, "backward": lambda x: x.backward(),
          "sync": True, "no_sync": contextlib.nullcontext}
    full = full_batch_step(model.module, [model.processor.collate(rows)], loss_fn, **kw)
    want = _grads(model)
    checkpoint_activations(model.peft_model.get_base_model())
    assert model.peft_model.get_base_model().language_model.gradient_checkpointing
    bounds = [(0, 2), (2, 4), (4, 5), (5, 8), (8, 11), (11, 14), (14, 15)]
    chunks = [model.processor.collate(rows[lo:hi]) for lo, hi in bounds]
    cached = grad_cache_step(model.module, chunks, loss_fn, **kw)
    got = _grads(model)
    print(f"max |GradCache - full batch| gradient difference: "
          f"{max(float((got[n] - want[n]).abs().max()) for n in want):.2e}")
    assert float(full.loss) == pytest.approx(float(cached.loss), abs=1e-12)
    assert set(got) == set(want) and len(want) == 2 * 21 + 1  # A and B of 21 adapters, τ
    assert all(g.dtype == torch.float64 for g in got.values())
    diff = max(float((got[n] - want[n]).abs().max()) for n in want)
    scale = max(float(w.abs().max()) for w in want.values())
    assert scale > 1e-3 and diff < 1e-10 * scale, (diff, scale)


def test_grad_cache_replays_each_chunks_dropout() -> None:
    """With dropout the re-forward of a chunk draws the masks of its first forward: the
    gradients equal those of the same chunked forwards run with grad."""
    model = _tiny(LoraConfig(r=4, alpha=8, dropout=0.3), learn=False)
    b, k = 4, 1
    rows, info = _pairs_batch(model, b, k)
    loss_fn = partial(_loss_fn, b=b, k=k, info=info)
    chunks = [model.processor.collate(rows[lo:hi]) for lo, hi in ((0, 2), (2, 4), (4, 12))]
    torch.manual_seed(7)
    grad_cache_step(model.module, chunks, loss_fn, device=CPU, autocast=model.autocast,
                    backward=lambda x: x.backward(), sync=True, no_sync=contextlib.nullcontext)
    after = torch.get_rng_state()
    got = _grads(model)
    torch.manual_seed(7)
    emb = torch.cat([model.module(c)[0] for c in chunks])
    loss_fn(emb, model.module.logit_scale)[0].backward()
    want = _grads(model)
    assert torch.equal(after, torch.get_rng_state())  # the generator moves as without replay
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=1e-6)


def test_learning_on_a_synthetic_task(tmp_path: Path) -> None:
    """hit@1 of 36 phrased queries against 36 texts rises from chance to far above it."""
    data = write_pairs(tmp_path / "pairs")
    out = tmp_path / "run"
    cfg = _cfg(data, out, max_steps=50, batch_size=16, log_every=5, epochs=20,
               **{"optim.lr": 0.01, "data.instruction": "none", "val.file": VAL_FILE,
                  "val.pool": "", "val.every": 50})
    from augret.train.loop import _build_check
    from augret.train.validate import run_check

    model = build_train_model(cfg, CPU)
    check = _build_check(cfg, TrainData(cfg.data, model.processor, cfg.seed), model)
    before = run_check(model.module, model.processor, check, device=CPU,
                       autocast=model.autocast)
    train(cfg)
    rows = _rows(out)
    losses = [r["loss"] for r in rows if "loss" in r]
    after = next(r for r in rows if "val_hit@1" in r)
    print(f"hit@1 {before['hit@1']:.3f} -> {after['val_hit@1']:.3f} (chance {CHANCE:.3f}); "
          f"hit@5 {before['hit@5']:.3f} -> {after['val_hit@5']:.3f}; loss {losses[0]:.3f} -> "
          f"{np.mean(losses[-3:]):.3f}")
    assert before["hit@1"] <= 3 * CHANCE
    assert after["val_hit@1"] >= 5 * CHANCE, after
    assert after["val_hit@5"] >= 0.5, after
    assert np.mean(losses[-3:]) < 0.75 * losses[0], losses


def test_resume_reproduces_the_loss_curve(sample_dir: Path, tmp_path: Path) -> None:
    """GradCache, LoRA dropout and a learnable temperature: 3 + 3 steps = 6 steps."""
    kw = {"max_steps": 6, "save_every": 3, "learn_temperature": True, "lora.dropout": 0.1,
          "grad_cache.query_chunk": 3, "grad_cache.candidate_chunk": 5}
    full = tmp_path / "full"
    train(_cfg(sample_dir, full, **kw))
    part = tmp_path / "part"
    train(_cfg(sample_dir, part, **{**kw, "max_steps": 3}))
    summary = train(_cfg(sample_dir, part, **{**kw, "resume": True}))
    assert summary["step"] == 6 and summary["family"] == "mllm"
    a, b = _losses(full), _losses(part)
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=1e-6), (step, a, b)
    scales = [r["logit_scale"] for r in _rows(part) if "loss" in r]
    assert scales[-1] != scales[0]  # the temperature was trained, and restored on resume
    ckpt = part / "checkpoints" / "step_0000006"
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "adapter", "config.yaml", "encoder.json", "rng_rank0.pt", "trainer.pt"]
    meta = json.loads((ckpt / "encoder.json").read_text())
    assert meta["weights"] == "adapter" and meta["mllm"]["model"] == TINY_MLLM
    items = [Item("a red cube"), Item(None, _image(3))]
    np.testing.assert_allclose(load_encoder(str(part), device="cpu").encode_queries(items),
                               load_encoder(str(full), device="cpu").encode_queries(items),
                               atol=1e-5)


def test_adapter_and_merged_directories_give_the_live_vectors(tmp_path: Path) -> None:
    model = _tiny(LoraConfig(r=4, alpha=8, dropout=0.0))
    items = [Item("a red cube"), Item(None, _image(1)),
             Item("blue", _image(2), instruction="Find it.")]
    model.encoder.model.eval()
    live = model.encoder.encode_queries(items)
    assert not np.allclose(live, load_encoder(TINY_MLLM, device="cpu").encode_queries(items),
                           atol=1e-4)  # the adapters change the vectors
    adapter = model.save(tmp_path / "ckpt", info={"step": 1})
    merged = model.save_merged(tmp_path / "merged", info={"step": 1})
    assert (adapter / "adapter" / "adapter_model.safetensors").is_file()
    assert (merged / "merged" / "model.safetensors").is_file()
    for path in (adapter, merged):
        got = load_encoder(str(path), device="cpu").encode_queries(items)
        np.testing.assert_allclose(got, live, atol=1e-5)
    # a new adapter goes on merged weights, not on a base that already carries one
    with pytest.raises(ConfigError, match="start from merged weights"):
        build_train_model(_cfg(tmp_path, tmp_path / "x", encoder=str(adapter)), CPU)
    assert build_train_model(_cfg(tmp_path, tmp_path / "y", encoder=str(merged)), CPU)


def test_data_views_keep_the_image_and_separate_the_instruction(sample_dir: Path,
                                                                 tmp_path: Path) -> None:
    enh = write_enhanced_train_copy(sample_dir, tmp_path / "enh")
    processor = load_encoder(TINY_MLLM, device="cpu").processor
    cfg = _cfg(sample_dir, tmp_path / "x", **{"data.enhanced_dir": str(enh),
                                              "data.view": "enhanced",
                                              "data.instruction": "first"}).data
    data = TrainData(cfg, processor, seed=1, separate_instruction=True)
    both = [e for e in (data.example((i, 0)) for i in range(len(data)))
            if e.query.pixels is not None and e.query.text][:3]
    assert both
    for ex in both:
        assert ex.query.text.startswith("ENHANCED") and ex.query.instruction
        assert ex.query.instruction not in ex.query.text
    raw = TrainData(dataclasses.replace(cfg, view="raw"), processor, seed=1,
                    separate_instruction=True).example((both[0].index, 0))
    assert raw.query.pixels is not None and "ENHANCED" not in raw.query.text
    chunked = TrainData(cfg, processor, seed=1, separate_instruction=True, chunks=(2, 3))
    chunks, info = chunked.collate([chunked.example((i, 0)) for i in range(5)])
    assert [len(c) for c in chunks] == [2, 2, 1, 3, 2] and info.size == 5
    rendered = chunks[0].texts[0]
    assert "<|im_start|>system\n" in rendered and "ENHANCED" in rendered


def test_a_hard_negative_that_is_a_positive_is_never_drawn(tmp_path: Path) -> None:
    from helpers.synthetic_pairs import TRAIN_FILE

    data = write_pairs(tmp_path / "pairs")
    qfile = data / TRAIN_FILE
    rows = [json.loads(x) for x in qfile.read_text().splitlines()]
    rows[0]["neg_cand_list"] = [rows[0]["pos_cand_list"][0], "2:7", "2:9"]
    qfile.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _cfg(data, tmp_path / "x", **{"data.hard_negatives": 2,
                                         "data.instruction": "none"}).data
    td = TrainData(cfg, load_encoder(TINY_MLLM, device="cpu").processor, seed=1)
    for epoch in range(5):
        assert sorted(td.example((0, epoch)).neg_ids) == ["2:7", "2:9"]


def _ddp_worker(rank: int, world: int, port: int, cfg: TrainConfig) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    train(cfg)


def test_two_rank_ddp_with_grad_cache_matches_one_rank(sample_dir: Path, tmp_path: Path,
                                                       free_port: int) -> None:
    """gloo: 2 ranks × 4 queries (GradCache chunks, candidates gathered with gradients)
    = 1 rank with 8 queries in one forward."""
    kw = {"max_steps": 3, "learn_temperature": True}
    one = tmp_path / "one"
    train(_cfg(sample_dir, one, batch_size=8, **{**kw, "grad_cache.enabled": False}))
    two = tmp_path / "two"
    cfg2 = _cfg(sample_dir, two, batch_size=4, **{**kw, "grad_cache.query_chunk": 3,
                                                  "grad_cache.candidate_chunk": 3})
    torch.multiprocessing.start_processes(_ddp_worker, args=(2, free_port, cfg2),
                                          nprocs=2, start_method="spawn")
    a, b = _losses(one), _losses(two)
    assert sorted(a) == sorted(b) == [1, 2, 3]
    diff = max(abs(a[s] - b[s]) for s in a)
    print(f"max loss difference 2 ranks vs 1: {diff:.2e}")
    assert diff < 2e-4, (a, b)
    items = [Item("a red cube"), Item(None, _image(5))]
    np.testing.assert_allclose(load_encoder(str(one), device="cpu").encode_queries(items),
                               load_encoder(str(two), device="cpu").encode_queries(items),
                               atol=2e-4)


def test_cli_train_resume_and_embed(sample_dir: Path, tmp_path: Path, capsys) -> None:
    from augret.cli.main import main
    from augret.encode import is_random_init

    out = tmp_path / "run"
    args = ["train", str(TINY_YAML), "--data", str(sample_dir), "--output-dir", str(out),
            "--max-steps", "2", "--batch-size", "8", "--no-progress", "--set", "val.file=",
            "--set", "log_every=1", "--set", "write_merged=true"]
    assert main(args) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert (out / "final" / "adapter").is_dir() and (out / "merged" / "merged").is_dir()
    assert main([*args, "--max-steps", "3", "--resume"]) == 0
    assert sorted(_losses(out)) == [1, 2, 3]
    capsys.readouterr()
    assert main(["embed", str(sample_dir), "--encoder", str(out), "--out", str(tmp_path / "e"),
                 "--tasks", "webqa_task1", "--workers", "0", "--device", "cpu",
                 "--no-progress", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["encoder"]["architecture"] == "mllm" and meta["dim"] == 32
    assert is_random_init(str(out)) and is_random_init(str(out / "merged"))


@pytest.mark.slow
def test_shipped_tiny_config_trains_and_evaluates(sample_dir: Path, tmp_path: Path,
                                                   capsys) -> None:
    """The issue's check: 40 steps of configs/train-mllm-tiny.yaml on the shapes sample write
    a falling loss, and augret mbeir run with the trained directory writes the table."""
    from augret.cli.main import main

    out, run = tmp_path / "out", tmp_path / "run"
    assert main(["train", str(TINY_YAML), "--data", str(sample_dir), "--output-dir", str(out),
                 "--max-steps", "40", "--no-progress"]) == 0
    losses = [r["loss"] for r in _rows(out) if "loss" in r]
    assert len(losses) == 8 and np.mean(losses[-2:]) < losses[0], losses
    assert main(["mbeir", "run", str(sample_dir), "--encoder", str(out), "--out", str(run),
                 "--workers", "0", "--device", "cpu", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "MSCOCO" in printed and (run / "table.md").is_file()
    assert "randomly initialised test model" in printed  # trained from tiny-mllm: still random
    print(f"losses every 5 steps: {[round(x, 3) for x in losses]}")


def test_the_lamra_recipe_config() -> None:
    cfg = load_config(TrainConfig, REPO / "configs" / "train-lamra-qwen2vl-2b.yaml")
    assert cfg.encoder == "mllm:lamra:Qwen/Qwen2-VL-2B-Instruct"
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.modules) == (
        128, 256, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert (cfg.temperature, cfg.learn_temperature, cfg.gather) == (0.05, False, True)
    assert (cfg.optim.lr, cfg.optim.schedule, cfg.optim.warmup(1000)) == (1e-4, "cosine", 30)
    assert cfg.gradient_checkpointing and cfg.amp == "auto" and cfg.epochs == 1
    assert cfg.grad_cache.enabled and cfg.batch_size == 64
    assert cfg.encoder_options == {"max_image_tokens": 300, "max_text_tokens": 480}
    with pytest.raises(ConfigError, match="not both"):
        load_config(TrainConfig, REPO / "configs" / "train-lamra-qwen2vl-2b.yaml",
                    {"optim.warmup_steps": 10})
    with pytest.raises(ConfigError, match=r"lora\.modules"):
        load_config(TrainConfig, None, {"lora.modules": ["qkv"]})
