"""flat16 at scale: equal to FAISS IndexFlatIP on 200k x 768 (slow), memory bounded by the
index plus one block on 2M x 768 (slow), and the benchmark scripts (their CPU paths in the
default tier, the GPU run in the gpu tier)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from augret.index import IndexConfig, build_indexes, load_index
from helpers.embedding_dirs import dids, write_entry, write_meta
from helpers.ties import assert_topk_equal_up_to_ties

pytest.importorskip("faiss")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str, *args: str, timeout: int) -> dict:
    out = subprocess.run([sys.executable, str(BENCH / name), *args, "--json"],
                         capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_equals_faiss_flat_on_200k_x_768(tmp_path):
    rng = np.random.default_rng(0)
    n, dim = 200_000, 768
    base = rng.standard_normal((n, dim), dtype=np.float32).astype(np.float16)
    base[150_000:150_200] = base[:200]  # exact duplicates: ties
    root = tmp_path / "emb"
    write_meta(root, dim)
    write_entry(root, "pools", "p", base, dids(1, n), shard_size=50_000)
    flat = load_index(build_indexes(root, tmp_path / "flat", pool="p", progress=False)["p"])
    f16 = load_index(build_indexes(root, tmp_path / "f16", IndexConfig(kind="flat16"),
                                   pool="p", progress=False)["p"], device="cpu")
    q = rng.standard_normal((300, dim), dtype=np.float32)
    q[:50] = base[:50]  # their best hit is tied with its duplicate
    for k in (10, 50):
        a, b = f16.search(q, k), flat.search(q, k)
        swaps = assert_topk_equal_up_to_ties(a.scores, a.rows, b.scores, b.rows, atol=1e-5)
        assert np.abs(a.scores - b.scores).max() < 1e-5
        assert 100 <= swaps <= 100 + 0.01 * a.rows.size  # 50 tied pairs, rare exact ties
    top = f16.search(q[:50], 2).rows
    assert {tuple(sorted(r)) for r in top} == {(i, 150_000 + i) for i in range(50)}


@pytest.mark.slow
def test_search_memory_is_the_index_plus_one_block_at_2m_x_768(tmp_path):
    res = _script("rss_flat16.py", "--n", "2000000", "--dim", "768", "--queries", "100",
                  "--block-mb", "256", "--dir", str(tmp_path), timeout=1800)
    assert res["index_bytes"] == 2_000_000 * 768 * 2 + 40 * 128  # 40 shards, 128-byte headers
    assert res["within_bound"], res
    assert res["anon_growth"] <= 1.1 * res["block_bytes"], res  # no float32 copy


def test_gpu_script_runs_on_torch_cpu_at_a_tiny_size():
    pytest.importorskip("torch")
    res = _script("gpu_flat16.py", "--devices", "cpu,cpu", "--n", "3000", "--queries", "120",
                  "--dims", "16,48", "--batch", "50", "--block-mb", "1", "--k", "20",
                  "--check", "40", timeout=300)
    assert [r["dim"] for r in res["results"]] == [16, 48]
    for r in res["results"]:
        assert r["devices"] == ["cpu", "cpu"] and r["search_s"] > 0
        assert r["check"]["queries"] == 40 and r["check"]["equal_up_to_ties"], r


@pytest.mark.gpu
def test_gpu_script_union_scale_at_768_and_3584():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    res = _script("gpu_flat16.py", timeout=3000)
    assert [r["dim"] for r in res["results"]] == [768, 3584]
    for r in res["results"]:
        assert r["candidates"] == 5_600_000 and r["queries"] == 190_000
        assert r["check"]["equal_up_to_ties"], r
        assert all(p > r["resident_gib"] / len(r["devices"]) for p in r["peak_gib_per_device"])


def test_cpu_benchmark_runs_at_a_tiny_size(tmp_path):
    res = _script("bench_flat16.py", "--n", "3000", "--dim", "32", "--queries", "40",
                  "--repeat", "1", "--dir", str(tmp_path), timeout=300)
    assert res["agreement"]["equal_up_to_ties"] and res["ratio_wall"] > 0
    assert set(res["search"]) == {"flat", "flat16"}
