"""Backends: registry, message conversion, transformers (tiny model), OpenAI client + server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from augret.enhance.backends import BACKENDS, get_backend
from augret.enhance.backends.base import (
    Backend,
    GenerationParams,
    GenerationRequest,
    GenerationResult,
)
from augret.enhance.backends.messages import (
    check_request,
    count_image_placeholders,
    encode_image,
    to_openai_messages,
)
from augret.errors import ConfigError, MissingExtraError


def _have(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


if _have("PIL"):
    from PIL import Image

needs_pil = pytest.mark.skipif(not _have("PIL"), reason="needs augret[enhance] (pillow)")

needs_torch = pytest.mark.skipif(
    not _have("torch", "transformers"), reason="needs augret[enhance] (torch, transformers)"
)
needs_server = pytest.mark.skipif(
    not _have("torch", "transformers", "httpx", "fastapi", "uvicorn"),
    reason="needs augret[enhance,serve]",
)

GREEDY = GenerationParams()
SYSTEM = {"role": "system", "content": [{"type": "text", "text": "You are an expert."}]}


def _req(text: str, image=None, n: int = 8, rid: str = "") -> GenerationRequest:
    content = ([{"type": "image"}] if image is not None else []) + [{"type": "text", "text": text}]
    return GenerationRequest(
        messages=[SYSTEM, {"role": "user", "content": content}],
        image=image,
        max_new_tokens=n,
        id=rid,
    )


def _red(w: int = 64, h: int = 48) -> Image.Image:
    return Image.new("RGB", (w, h), (200, 10, 10))


def _truncated_png() -> Image.Image:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="PNG")
    return Image.open(io.BytesIO(buf.getvalue()[:60]))  # header parses, pixel data does not


# --------------------------------------------------------------------------- registry


def test_registry_names_and_unknown():
    assert BACKENDS == ("transformers", "openai", "vllm", "fake", "reference")
    with pytest.raises(ConfigError, match=r"unknown backend 'hf'.*transformers, openai, vllm, "
                                          r"fake, reference"):
        get_backend("hf", "tiny")
    with pytest.raises(ConfigError, match="unknown backend"):
        get_backend("vLLM", "tiny")  # exact names, no guessing


def test_registry_unknown_option():
    with pytest.raises(ConfigError, match=r"does not accept option.*bogus.*valid options"):
        get_backend("openai", "m", bogus=1)


def test_vllm_missing_extra():
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vllm is installed")
    with pytest.raises(MissingExtraError) as info:
        get_backend("vllm", "tiny")
    assert "pip install 'augret[vllm]'" in str(info.value)


@pytest.mark.parametrize(
    ("name", "module"), [("transformers", "transformers"), ("openai", "httpx")]
)
def test_missing_enhance_extra(monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingExtraError) as info:
        get_backend(name, "tiny")
    assert "pip install 'augret[enhance]'" in str(info.value)


def test_registry_imports_lazily():
    code = (
        "import sys, augret.enhance.backends as b;"
        "heavy = [m for m in ('torch', 'transformers', 'httpx', 'vllm',"
        " 'augret.enhance.backends.transformers_backend',"
        " 'augret.enhance.backends.openai_backend',"
        " 'augret.enhance.backends.vllm_backend') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- messages


@needs_pil
def test_check_request_rules():
    assert check_request(_req("hi")) is None
    assert check_request(_req("hi", _red())) is None
    no_image = GenerationRequest(messages=[{"role": "user", "content": [{"type": "image"}]}])
    assert "no image" in check_request(no_image)
    missing = GenerationRequest(messages=[{"role": "user", "content": "hi"}], image=_red())
    assert "no {'type': 'image'} placeholder" in check_request(missing)
    two = GenerationRequest(
        messages=[{"role": "user", "content": [{"type": "image"}, {"type": "image"}]}], image=_red()
    )
    assert "at most one image" in check_request(two)
    assert "PIL image" in check_request(_req("hi", "not an image"))
    assert "max_new_tokens" in check_request(_req("hi", n=0))
    assert "non-empty" in check_request(GenerationRequest(messages=[]))
    assert count_image_placeholders([SYSTEM, {"role": "user", "content": "<image>"}]) == 0


@needs_pil
def test_to_openai_messages_converts_image_and_system():
    image = Image.new("RGB", (7, 5), (1, 2, 3))
    messages, fmt = to_openai_messages(_req("what?", image).messages, image)
    assert fmt == "png"
    assert messages[0] == {"role": "system", "content": "You are an expert."}
    user = messages[1]
    assert user["role"] == "user"
    assert user["content"][1] == {"type": "text", "text": "what?"}
    url = user["content"][0]["image_url"]["url"]
    assert user["content"][0]["type"] == "image_url"
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (7, 5) and decoded.getpixel((3, 3)) == (1, 2, 3)  # lossless

    text_only, fmt = to_openai_messages([{"role": "user", "content": "plain"}], None)
    assert text_only == [{"role": "user", "content": "plain"}] and fmt is None
    listed, _ = to_openai_messages(_req("t").messages, None, system_as_string=False)
    assert listed[0]["content"] == [{"type": "text", "text": "You are an expert."}]


@needs_pil
def test_image_encoding_formats():
    assert encode_image(_red(), "auto")[1] == "jpeg"
    assert encode_image(Image.new("RGBA", (4, 4)), "auto")[1] == "png"
    url, fmt = encode_image(_red(), "jpeg")
    assert fmt == "jpeg" and url.startswith("data:image/jpeg;base64,")
    with pytest.raises(ValueError, match="placeholder"):
        to_openai_messages([{"role": "user", "content": "x"}], _red())
    with pytest.raises(ValueError, match="no image"):
        to_openai_messages([{"role": "user", "content": [{"type": "image"}]}], None)


# --------------------------------------------------------------------------- transformers


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory):
    """The transformers backend on the tiny Qwen2-VL, loaded from its local directory."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUGRET_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "augret-cache"))
        backend = get_backend("transformers", "tiny", batch_size=4, device="cpu")
        yield backend
        backend.close()


@needs_torch
def test_transformers_backend_loads_tiny_from_local_dir(tiny_backend):
    assert isinstance(tiny_backend, Backend)
    assert tiny_backend.name == "transformers"
    assert tiny_backend.model_id == "tiny-qwen2-vl" and tiny_backend.revision is None
    assert Path(tiny_backend.path).is_dir() and Path(tiny_backend.path).name == "tiny-qwen2-vl-v1"
    info = tiny_backend.describe()
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert len(info["eos_token_ids"]) == 2


@needs_torch
def test_transformers_end_to_end_mixed_batch(tiny_backend):
    requests = [
        _req("a red cube", _red(), n=8, rid="a"),
        _req("what is it?", None, n=5, rid="b"),
        _req("a blue bar", Image.new("RGB", (90, 30), (0, 0, 255)), n=8, rid="c"),
        _req("hello", None, n=12, rid="d"),
        _req("grey", Image.new("L", (40, 40), 128), n=5, rid="e"),  # converted to RGB
    ]
    results = tiny_backend.generate(requests, GREEDY)
    assert len(results) == len(requests)
    for request, result in zip(requests, results, strict=True):
        assert result.ok, result.error
        assert isinstance(result.text, str)
        assert 1 <= result.output_tokens <= request.max_new_tokens
        assert result.finish_reason in ("stop", "length")
        if result.finish_reason == "length":
            assert result.output_tokens == request.max_new_tokens
    # batching (left padding, budget groups) does not change greedy outputs
    solo = [tiny_backend.generate([r], GREEDY)[0] for r in requests]
    assert [r.text for r in solo] == [r.text for r in results]
    assert [r.output_tokens for r in solo] == [r.output_tokens for r in results]


@needs_torch
def test_transformers_greedy_is_deterministic(tiny_backend):
    requests = [_req("a red cube", _red()), _req("hello")]
    first = tiny_backend.generate(requests, GREEDY)
    second = tiny_backend.generate(requests, GREEDY)
    assert [r.text for r in first] == [r.text for r in second]


@needs_torch
def test_transformers_sampling_is_seeded(tiny_backend):
    requests = [_req("a red cube", _red(), n=10), _req("hello", n=10)]
    params = GenerationParams(temperature=1.0, top_p=0.95, seed=7)
    a = tiny_backend.generate(requests, params)
    b = tiny_backend.generate(requests, params)
    assert [r.text for r in a] == [r.text for r in b]
    import torch

    state = torch.random.get_rng_state()
    tiny_backend.generate(requests, params)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched


@needs_torch
def test_transformers_stop_on_eos(tiny_backend):
    eos = tiny_backend.eos_token_ids[0]
    cfg = tiny_backend.model.generation_config
    cfg.sequence_bias = {(eos,): 100.0}  # the model now ends at once
    try:
        result = tiny_backend.generate([_req("hello", n=8)], GREEDY)[0]
    finally:
        cfg.sequence_bias = None
    assert result.ok and result.text == ""
    assert result.finish_reason == "stop" and result.output_tokens == 1  # EOS counted


@needs_torch
def test_transformers_decode_counts(tiny_backend):
    eos = tiny_backend.eos_token_ids[0]
    pad = tiny_backend.pad_token_id
    word = tiny_backend.tokenizer.convert_tokens_to_ids("Ġred")
    cut = tiny_backend._decode([word, word, eos, pad, pad], budget=5)
    assert (cut.text, cut.output_tokens, cut.finish_reason) == (" red red", 3, "stop")
    full = tiny_backend._decode([word] * 4, budget=4)
    assert (full.output_tokens, full.finish_reason) == (4, "length")


@needs_torch
def test_rendered_prompt_comes_from_chat_template(tiny_backend):
    with_image = tiny_backend.render_prompt(_req("What is this landmark?", _red()))
    assert with_image.startswith(
        "<|im_start|>system\nYou are an expert.<|im_end|>\n<|im_start|>user\n"
    )
    assert with_image.endswith("<|im_start|>assistant\n")
    assert with_image.count("<|image_pad|>") == 1
    assert with_image.count("<|vision_start|>") == 1
    assert "What is this landmark?" in with_image
    text_only = tiny_backend.render_prompt(_req("make it red"))
    assert text_only.count("<|image_pad|>") == 0 and "make it red" in text_only
    # the template is the processor's own: change it and the prompt follows
    original = tiny_backend.processor.chat_template
    tiny_backend.processor.chat_template = "{% for m in messages %}[{{ m['role'] }}]{% endfor %}"
    try:
        assert tiny_backend.render_prompt(_req("x")) == "[system][user]"
        with pytest.raises(ValueError, match="rendered 0 <\\|image_pad\\|> placeholder"):
            tiny_backend.render_prompt(_req("x", _red()))  # a template that drops the image
    finally:
        tiny_backend.processor.chat_template = original


@needs_torch
def test_transformers_poisoned_request_isolated(tiny_backend):
    good = [_req("a red cube", _red(), rid="0"), _req("hello", rid="1"), _req("blue", _red(30, 60))]
    baseline = tiny_backend.generate(good, GREEDY)
    poisoned = [
        good[0],
        _req("thin", Image.new("RGB", (1, 300)), rid="bad"),  # the processor rejects it
        good[1],
        _req("broken", _truncated_png()),  # unreadable pixel data
        _req("wrong", "not an image"),
        GenerationRequest(messages=[{"role": "user", "content": [{"type": "image"}]}]),
        good[2],
    ]
    results = tiny_backend.generate(poisoned, GREEDY)
    assert len(results) == len(poisoned)
    assert not results[1].ok and "aspect ratio" in results[1].error
    assert not results[3].ok and results[3].error
    assert not results[4].ok and "PIL image" in results[4].error
    assert not results[5].ok and "no image" in results[5].error
    kept = [results[0], results[2], results[6]]
    assert all(r.ok for r in kept)
    assert [r.text for r in kept] == [r.text for r in baseline]


@needs_torch
@pytest.mark.parametrize("preset", ["tiny-qwen2.5-vl", "tiny-qwen3-vl"])
def test_transformers_other_presets(preset):
    backend = get_backend("transformers", preset, batch_size=2, device="cpu")
    try:
        results = backend.generate([_req("a red cube", _red(), n=4), _req("hi", n=6)], GREEDY)
        assert all(r.ok for r in results), [r.error for r in results]
        assert backend.model_id == preset
    finally:
        backend.close()


# --------------------------------------------------------------------------- openai client


@pytest.fixture(scope="module")
def server(tiny_backend):
    from helpers.openai_server import OpenAICompatServer

    with OpenAICompatServer(tiny_backend, "tiny") as srv:
        yield srv


@pytest.fixture
def fresh_server(server):
    server.faults.clear()
    server.stats.reset()
    server.rejected_fields.clear()
    yield server
    server.faults.clear()
    server.rejected_fields.clear()


def _client(server, **options):
    defaults = {"base_url": server.base_url, "backoff_base": 0.01, "timeout": 10.0}
    return get_backend("openai", "tiny", **{**defaults, **options})


@needs_server
def test_openai_matches_transformers(fresh_server, tiny_backend):
    requests = [
        _req("a red cube", _red(), n=8),
        _req("what is it?", n=5),
        _req("x", _red(30, 90), n=7),
    ]
    expected = tiny_backend.generate(requests, GREEDY)
    got = _client(fresh_server).generate(requests, GREEDY)
    assert [r.error for r in got] == [None] * 3
    assert [r.text for r in got] == [r.text for r in expected]
    assert [r.output_tokens for r in got] == [r.output_tokens for r in expected]
    assert [r.finish_reason for r in got] == [r.finish_reason for r in expected]
    assert got[0].extra["image_format"] == "png" and got[0].extra["attempts"] == 1
    assert "image_format" not in got[1].extra


@needs_server
def test_openai_payload(fresh_server):
    client = _client(fresh_server, extra_body={"top_k": -1})
    payload, fmt = client.build_payload(_req("hi", _red(), n=33), GenerationParams(0.7, 0.9, 5))
    assert payload["max_tokens"] == 33 and payload["model"] == "tiny"
    assert (payload["temperature"], payload["top_p"], payload["seed"]) == (0.7, 0.9, 5)
    assert payload["top_k"] == -1 and fmt == "png"
    assert payload["messages"][0] == {"role": "system", "content": "You are an expert."}


@needs_server
def test_openai_output_carries_no_special_tokens(fresh_server, tiny_backend):
    request = _req("a red cube", _red(), n=8)
    expected = tiny_backend.generate([request], GREEDY)[0].text
    client = _client(fresh_server)
    fresh_server.faults.push("leak:<|quad_start|>")
    got = client.generate([request], GREEDY)[0]
    assert got.text == expected and got.extra["special_tokens_stripped"] == 1
    assert fresh_server.stats.bodies[-1]["skip_special_tokens"] is True  # asked first
    fresh_server.faults.push("leak:<|quad_start|>")
    raw = _client(fresh_server, special_tokens=[]).generate([request], GREEDY)[0]
    assert "<|quad_start|>" in raw.text


@needs_server
def test_openai_stops_asking_a_server_that_refuses_the_field(fresh_server):
    fresh_server.rejected_fields.add("skip_special_tokens")
    client = _client(fresh_server)
    first = client.generate([_req("hello")], GREEDY)[0]
    assert first.ok and first.extra["attempts"] == 1, first.error
    assert client.generate([_req("again")], GREEDY)[0].ok
    asked = ["skip_special_tokens" in b for b in fresh_server.stats.bodies]
    assert asked == [True, False, False]


@needs_server
def test_openai_retries_transient_errors(fresh_server):
    fresh_server.faults.push("500", "503", "close", "malformed", "noshape")
    result = _client(fresh_server, max_retries=5).generate([_req("hello")], GREEDY)[0]
    assert result.ok, result.error
    assert result.extra["attempts"] == 6
    assert fresh_server.stats.actions == ["500", "503", "close", "malformed", "noshape", "ok"]


@needs_server
def test_openai_honours_retry_after(fresh_server):
    fresh_server.faults.push("429:0.6")
    start = time.monotonic()
    result = _client(fresh_server, backoff_base=0.01).generate([_req("hello")], GREEDY)[0]
    assert result.ok and result.extra["attempts"] == 2
    assert time.monotonic() - start >= 0.6


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("500", "HTTP 500"),
        ("close", "connection error"),
        ("malformed", "malformed JSON"),
        ("noshape", "unexpected response shape"),
        ("429:0", "HTTP 429"),
    ],
)
@needs_server
def test_openai_persistent_errors_become_results(fresh_server, fault, reason):
    fresh_server.faults.default = fault
    results = _client(fresh_server, max_retries=2).generate([_req("a"), _req("b", _red())], GREEDY)
    for result in results:
        assert not result.ok and result.text is None
        assert reason in result.error and "after 3 attempt(s)" in result.error
        assert result.extra["attempts"] == 3


@needs_server
def test_openai_client_error_not_retried(fresh_server):
    fresh_server.faults.push("400")
    result = _client(fresh_server, max_retries=3).generate([_req("a")], GREEDY)[0]
    assert not result.ok and "HTTP 400" in result.error and "injected 400" in result.error
    assert result.extra["attempts"] == 1


@needs_server
def test_openai_timeout(fresh_server):
    fresh_server.faults.push("sleep:3")
    start = time.monotonic()
    result = _client(fresh_server, timeout=0.5, max_retries=0).generate([_req("a")], GREEDY)[0]
    assert not result.ok and "timeout after 0.5s" in result.error
    assert time.monotonic() - start < 2.5
    fresh_server.faults.clear()
    fresh_server.faults.push("sleep:3")
    retried = _client(fresh_server, timeout=0.5, max_retries=1).generate([_req("a")], GREEDY)[0]
    assert retried.ok and retried.extra["attempts"] == 2


@pytest.mark.skipif(not _have("httpx"), reason="needs augret[enhance] (httpx)")
def test_openai_connection_refused_is_quick(free_port):
    port = free_port  # nothing listens there any more
    client = get_backend(
        "openai", "tiny", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, backoff_base=0.01
    )
    start = time.monotonic()
    results = client.generate([_req("a"), _req("b")], GREEDY)
    assert time.monotonic() - start < 5
    assert all(
        not r.ok and "connection error" in r.error and "ConnectError" in r.error for r in results
    )


@needs_server
def test_openai_concurrency_limit(fresh_server):
    fresh_server.faults.default = "sleep:0.2"
    requests = [_req(f"item {i}", n=2) for i in range(10)]
    results = _client(fresh_server, max_concurrency=3).generate(requests, GREEDY)
    assert all(r.ok for r in results)
    assert fresh_server.stats.requests == 10
    assert fresh_server.stats.max_in_flight == 3


@needs_server
def test_openai_invalid_request_never_sent(fresh_server):
    results = _client(fresh_server).generate([_req("a", "not an image"), _req("ok")], GREEDY)
    assert not results[0].ok and "PIL image" in results[0].error
    assert results[1].ok and fresh_server.stats.requests == 1


@needs_server
def test_openai_generate_from_thread_and_running_loop(fresh_server):
    client = _client(fresh_server)
    box: list[list[GenerationResult]] = []
    thread = threading.Thread(target=lambda: box.append(client.generate([_req("t")], GREEDY)))
    thread.start()
    thread.join(30)
    assert box and box[0][0].ok

    async def inside_loop() -> list[GenerationResult]:
        return client.generate([_req("t")], GREEDY)  # sync call inside a running loop

    assert asyncio.run(inside_loop())[0].ok
    assert asyncio.run(client.agenerate([_req("t")], GREEDY))[0].ok
    assert client.generate([], GREEDY) == []


def test_retry_after_parsing():
    from email.utils import formatdate

    from augret.enhance.backends.openai_backend import _parse_retry_after

    assert _parse_retry_after("2") == 2.0
    assert _parse_retry_after(None) is None and _parse_retry_after("soon") is None
    later = _parse_retry_after(formatdate(time.time() + 30, usegmt=True))
    assert later is not None and 25 < later <= 30


# --------------------------------------------------------------------------- transformers serve


def _serve_available() -> bool:
    from transformers.utils.import_utils import is_serve_available

    return is_serve_available()


needs_transformers_cli = pytest.mark.skipif(
    not (shutil.which("transformers") or (Path(sys.executable).parent / "transformers").exists()),
    reason="transformers CLI not found",
)


@contextlib.contextmanager
def _transformers_serve(model_path: str, log_path: Path, port: int):
    """``transformers serve <local dir>`` on ``port``, offline; yields its ``/v1`` URL."""
    if not _serve_available():
        pytest.skip("transformers serve needs `pip install transformers[serving]` (openai package)")
    import httpx

    cli = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
    log = log_path.open("w")
    proc = subprocess.Popen(
        [cli, "serve", model_path, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log_path.read_text()[-2000:]
            assert time.monotonic() < deadline, "transformers serve did not start"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
@needs_transformers_cli
@needs_torch
def test_transformers_serve_with_local_tiny_model(tiny_backend, tmp_path, free_port):
    """`transformers serve <local dir>` works offline; our client talks to it."""
    with _transformers_serve(tiny_backend.path, tmp_path / "serve.log", free_port) as url:
        client = get_backend("openai", tiny_backend.path, base_url=url, timeout=60)
        requests = [_req("a red cube", _red(), n=8), _req("what is it?", n=6)]
        got = client.generate(requests, GREEDY)
        expected = tiny_backend.generate(requests, GREEDY)
        assert all(r.ok for r in got), [r.error for r in got]
        # transformers serve strips surrounding whitespace from the message content
        assert [r.text for r in got] == [r.text.strip() for r in expected]
        assert [r.output_tokens for r in got] == [r.output_tokens for r in expected]
        assert [r.finish_reason for r in got] == [r.finish_reason for r in expected]
        # it refuses unknown fields (HTTP 422): the client stopped asking it to skip tokens
        assert client.skip_special_tokens is False


@pytest.mark.slow
@needs_transformers_cli
@needs_torch
def test_transformers_serve_enhances_mini_mscoco_as_the_local_model(
    tiny_backend, shared_data, tmp_path, free_port
):
    """Every row of the mini dir through `transformers serve` equals the transformers
    backend's: no special token the server leaves in its text reaches the output."""
    import json

    from augret.enhance import EnhanceConfig, enhance

    data = shared_data / "mbeir-mini-mscoco"
    direct = enhance(data, tmp_path / "direct",
                     EnhanceConfig(model="tiny", store=tmp_path / "a.sqlite"),
                     backend=tiny_backend, progress=False)
    with _transformers_serve(tiny_backend.path, tmp_path / "serve.log", free_port) as url:
        cfg = EnhanceConfig(backend="openai", model=tiny_backend.path, base_url=url,
                            store=tmp_path / "b.sqlite",
                            backend_options={"timeout": 300, "max_concurrency": 1})
        served = enhance(data, tmp_path / "served", cfg, progress=False)
    assert served["last_run"]["failed"] == direct["last_run"]["failed"] == 0
    rows = 0
    for name in direct["files"]:
        a = (tmp_path / "direct" / name).read_text().splitlines()
        b = (tmp_path / "served" / name).read_text().splitlines()
        assert len(a) == len(b)
        for x, y in zip(map(json.loads, a), map(json.loads, b), strict=True):
            key = "txt" if "txt" in x else "query_txt"
            assert x[key] == y[key] and "<|" not in (y[key] or "")
            rows += 1
    assert rows == 252


# --------------------------------------------------------------------------- vllm (faked)


@needs_pil
def test_vllm_wrapper_with_fake_engine(monkeypatch):
    """vLLM needs CUDA; a stand-in module checks the thin wrapper's calls and fallbacks."""
    import types

    calls: dict[str, list] = {"init": [], "chat": []}

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class LLM:
        def __init__(self, **kwargs):
            calls["init"].append(kwargs)

        def chat(self, conversations, sampling_params, use_tqdm=False):
            calls["chat"].append((conversations, sampling_params))
            if len(conversations) > 1 and any(
                "boom" in str(c[-1]["content"]) for c in conversations
            ):
                raise ValueError("prompt too long")
            if "boom" in str(conversations[0][-1]["content"]):
                raise ValueError("prompt too long")
            outs = []
            for conv, sp in zip(conversations, sampling_params, strict=True):
                n = sp.kwargs["max_tokens"]
                completion = types.SimpleNamespace(
                    text=f"{len(conv)}:{n}", token_ids=list(range(n)), finish_reason="length"
                )
                outs.append(types.SimpleNamespace(outputs=[completion]))
            return outs

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams, fake.__version__ = LLM, SamplingParams, "0.0-fake"
    monkeypatch.setitem(sys.modules, "vllm", fake)
    backend = get_backend("vllm", "org/model", revision="abc", llm_kwargs={"enforce_eager": True})
    init = calls["init"][0]
    assert init["model"] == "org/model" and init["revision"] == "abc"
    assert init["max_model_len"] == 16384 and init["limit_mm_per_prompt"] == {"image": 1}
    assert init["enforce_eager"] is True

    requests = [_req("a", _red(), n=3), _req("boom", n=4), _req("c", n=5), _req("x", "not")]
    results = backend.generate(requests, GenerationParams(temperature=0.5, top_p=0.9, seed=3))
    assert [r.text for r in results] == ["2:3", None, "2:5", None]
    assert "prompt too long" in results[1].error and "PIL image" in results[3].error
    assert results[0].output_tokens == 3 and results[0].finish_reason == "length"
    conversations, sampling = calls["chat"][0]
    assert len(conversations) == 3  # the invalid request never reached the engine
    assert [s.kwargs["max_tokens"] for s in sampling] == [3, 4, 5]
    assert sampling[0].kwargs | {"max_tokens": 0} == {
        "max_tokens": 0,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": -1,
        "seed": 3,
    }
    image_part = conversations[0][1]["content"][0]
    assert image_part["type"] == "image_url"
    assert image_part["image_url"]["url"].startswith("data:image/png;base64,")
    assert conversations[0][0] == {"role": "system", "content": "You are an expert."}
    assert len(calls["chat"]) == 1 + 3  # the failing call, then one call per request
