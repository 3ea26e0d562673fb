"""The contrastive loss, optimizer groups and LR schedule against UniIR's definitions."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from augret.train.config import OptimConfig  # noqa: E402
from augret.train.loop import _lr_factor, build_optimizer  # noqa: E402
from augret.train.loss import contrastive_loss  # noqa: E402

F = torch.nn.functional


def _data(b: int = 6, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)


def test_loss_is_uniirs_query_to_candidate_cross_entropy() -> None:
    q, p = _data()
    scale = torch.tensor(math.log(1 / 0.07))
    loss, acc, n = contrastive_loss(q, p, scale, valid=torch.ones(6, dtype=torch.bool))
    logits = F.normalize(q, dim=-1) @ F.normalize(p, dim=-1).T * scale.exp()
    want = F.cross_entropy(logits, torch.arange(6))
    torch.testing.assert_close(loss, want)
    assert float(acc) == float((logits.argmax(1) == torch.arange(6)).float().mean())
    assert int(n) == 6
    sym, _, _ = contrastive_loss(q, p, scale, valid=torch.ones(6, dtype=torch.bool),
                                 symmetric=True)
    torch.testing.assert_close(sym, 0.5 * (want + F.cross_entropy(logits.T, torch.arange(6))))


def test_skipped_examples_leave_the_loss() -> None:
    q, p = _data()
    scale = torch.tensor(2.0)
    valid = torch.tensor([True, False, True, True, False, True])
    loss, _, n = contrastive_loss(q, p, scale, valid=valid)
    keep = valid.nonzero().squeeze(1)
    sub, _, _ = contrastive_loss(q[keep], p[keep], scale, valid=torch.ones(4, dtype=torch.bool))
    torch.testing.assert_close(loss, sub)
    assert int(n) == 4


def test_hard_negatives_join_the_candidates() -> None:
    q, p = _data(4)
    negs = torch.randn(4, 2, 8, generator=torch.Generator().manual_seed(3))
    nv = torch.tensor([[True, True], [True, False], [False, False], [True, True]])
    scale = torch.tensor(1.0)
    loss, _, _ = contrastive_loss(q, p, scale, valid=torch.ones(4, dtype=torch.bool),
                                  negatives=negs, neg_valid=nv)
    qn = F.normalize(q, dim=-1)
    cands = torch.cat([F.normalize(p, dim=-1), F.normalize(negs.reshape(8, 8), dim=-1)])
    logits = (qn @ cands.T * scale.exp()).masked_fill(
        ~torch.cat([torch.ones(4, dtype=torch.bool), nv.reshape(-1)])[None], float("-inf"))
    torch.testing.assert_close(loss, F.cross_entropy(logits, torch.arange(4)))


def test_false_negative_filter_drops_too_similar_hard_negatives() -> None:
    """A hard negative whose cosine similarity to a query exceeds neg_max_sim leaves that
    query's candidates (and only that query's)."""
    q, p = _data(3)
    negs = torch.randn(3, 1, 8, generator=torch.Generator().manual_seed(5))
    negs[0, 0] = q[0] * 2 + 0.01  # a near-duplicate of query 0: a false negative for it
    nv = torch.ones(3, 1, dtype=torch.bool)
    scale, ones = torch.tensor(1.0), torch.ones(3, dtype=torch.bool)
    kept, _, _ = contrastive_loss(q, p, scale, valid=ones, negatives=negs, neg_valid=nv)
    got, _, _ = contrastive_loss(q, p, scale, valid=ones, negatives=negs, neg_valid=nv,
                                 neg_max_sim=0.9)
    qn = F.normalize(q, dim=-1)
    cands = torch.cat([F.normalize(p, dim=-1), F.normalize(negs.reshape(3, 8), dim=-1)])
    sims = qn @ cands.T
    assert float(sims[0, 3]) > 0.99 and float(sims[1:, 3:].max()) < 0.9
    blocked = torch.zeros_like(sims, dtype=torch.bool)
    blocked[0, 3] = True
    want = F.cross_entropy((sims * scale.exp()).masked_fill(blocked, float("-inf")),
                           torch.arange(3))
    torch.testing.assert_close(got, want)
    assert float(got) < float(kept)


def test_optimizer_groups_follow_uniir() -> None:
    open_clip = pytest.importorskip("open_clip")
    from augret.encode.backbones import TINY_MODEL_CFG
    from augret.encode.clip_sf import CLIPScoreFusion

    model = CLIPScoreFusion(open_clip.model.CLIP(**TINY_MODEL_CFG))
    opt = build_optimizer(model, OptimConfig())
    no_decay, decay = opt.param_groups
    assert (no_decay["weight_decay"], decay["weight_decay"]) == (0.0, 0.2)
    assert opt.defaults["lr"] == 1e-5 and opt.defaults["betas"] == (0.9, 0.98)
    assert opt.defaults["eps"] == 1e-6
    names = {id(p): n for n, p in model.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    dd = {names[id(p)] for p in decay["params"]}
    assert "clip_model.logit_scale" in nd and "clip_model.ln_final.weight" in nd
    assert "clip_model.visual.class_embedding" in nd  # 1-d
    assert "clip_model.visual.transformer.resblocks.0.attn.in_proj_bias" in nd
    assert "clip_model.positional_embedding" in dd and "clip_model.visual.proj" in dd
    assert len(nd) + len(dd) == len(names)


def test_cosine_schedule_is_cosine_annealing_to_zero() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    ref_opt = torch.optim.SGD([p], lr=1.0)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=20, eta_min=0)
    f = _lr_factor("cosine", 0, 20)
    for step in range(20):
        assert f(step) == pytest.approx(ref_opt.param_groups[0]["lr"], abs=1e-9)
        ref_opt.step()
        ref.step()
    warm = _lr_factor("cosine", 5, 25)
    assert [round(warm(s), 3) for s in range(5)] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert warm(25) == pytest.approx(0.0, abs=1e-12)
