"""Tiny, randomly initialised Qwen-VL models for offline smoke runs and tests.

The presets use the real Qwen2-VL, Qwen2.5-VL and Qwen3-VL architectures from ``transformers``
at toy sizes, with a processor built entirely locally: a byte-level BPE tokenizer trained with
``tokenizers`` on a fixed corpus (so it is deterministic), the Qwen special tokens, the matching
Qwen image processor with small pixel limits, and a Qwen-style chat template. Nothing is
downloaded. The weights are random (fixed seed), so **the generated text is meaningless**: the
presets exist to exercise the whole pipeline (chat template, image placeholders, batching,
budgets, servers) on a CPU in seconds.

>>> model, processor = build_tiny_vlm("tiny-qwen2-vl")  # doctest: +SKIP
>>> path = tiny_model_dir("tiny-qwen3-vl")  # saved once; from_pretrained(path)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augret._lazy import require
from augret._paths import cache_dir
from augret.data.jsonl import read_json_or_none
from augret.enhance.backends._hf import quiet_progress
from augret.enhance.backends.special_tokens import QWEN_CHAT_TOKENS
from augret.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, ProcessorMixin

__all__ = [
    "MIN_TRANSFORMERS",
    "TINY_ALIASES",
    "TINY_PRESETS",
    "TINY_SEED",
    "TINY_VERSION",
    "build_tiny_processor",
    "build_tiny_vlm",
    "check_transformers",
    "is_tiny_model",
    "resolve_tiny_preset",
    "tiny_model_dir",
]

logger = logging.getLogger(__name__)

#: Canonical preset names.
TINY_PRESETS: tuple[str, ...] = ("tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-qwen3-vl")
#: Short names accepted wherever a preset is.
TINY_ALIASES: dict[str, str] = {"tiny": "tiny-qwen2-vl"}
#: Bumped whenever the recipe changes; part of the cache directory name.
TINY_VERSION = "v1"
#: Seed for the random weights (identical weights on every build of a preset).
TINY_SEED = 1234
#: Name of the marker file written next to a saved tiny model.
MARKER_FILE = "augret-tiny.json"
#: The oldest ``transformers`` the presets build with (the floor ``pyproject.toml`` declares):
#: their tokenizer is made from an in-memory vocabulary and merges
#: (``Qwen2Tokenizer(vocab=..., merges=...)``), which transformers 5 introduced; 4.x wants
#: vocabulary and merges files.
MIN_TRANSFORMERS = "5.0"

_MEANINGLESS = (
    "tiny preset %s: randomly initialised weights, outputs are meaningless "
    "(for offline smoke runs and tests only)"
)

# Qwen's special tokens, in Qwen's order (ids follow the learned BPE vocabulary).
_SPECIAL_TOKENS: tuple[str, ...] = QWEN_CHAT_TOKENS
_BPE_VOCAB_SIZE = 2048  # upper bound for the trainer; the corpus yields fewer merges

# A Qwen-style ChatML template: images become <|vision_start|><|image_pad|><|vision_end|>,
# which the processor expands to one pad token per merged patch. ``{system}`` is replaced by
# the default-system block (Qwen2/2.5-VL) or nothing (Qwen3-VL).
_DEFAULT_SYSTEM_BLOCK = (
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
)
_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{system}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "<|im_start|>assistant\n"
    "{% endif %}"
)

# A fixed training corpus for the BPE tokenizer (content only shapes the vocabulary).
_CORPUS_LINES: tuple[str, ...] = (
    "You are a helpful assistant.",
    "system user assistant",
    "You are an expert in refining queries for multimodal retrieval.",
    "You are an expert in writing database text entries for images for multimodal retrieval.",
    "Describe the image as a dense keyword caption of at most 100 words.",
    "Rewrite the question so that it names the entity shown in the image.",
    "Never answer the question. Keep only the phrases that describe the target.",
    "Subject first, then distinctive details: colours, materials, visible text, logos, shapes.",
    "Name a unique entity when it is recognisable: a landmark, an artwork, a car model, a species.",
    "Otherwise add three to five words of dominant colour or material and the category.",
    "No filler adjectives, no background, no weather and no lighting.",
    "What is the name of this landmark? When was it built? Where is it located?",
    "Which species of bird is this? How tall does this tree grow? Why is the sky blue?",
    "When was it discovered? Who painted this artwork? What year was this car made?",
    "is shiny and silver with shorter sleeves; is black with a lace collar",
    "make it red and add a white stripe; change the dog to a cat; put the cup on the table",
    "has long sleeves and a floral pattern; show the same shoes in brown leather",
    "a red cube on a blue table next to a green sphere and a yellow cone",
    "a black and white photo of a lighthouse on a rocky coast at the edge of the sea",
    "close-up of a golden retriever puppy lying on green grass with a tennis ball",
    "aerial view of a city with tall glass towers, a river, bridges and a park",
    "a woman wearing a striped dress and a straw hat holding a wicker basket",
    "a man riding a bicycle along a narrow street lined with old brick houses",
    "a bowl of fresh fruit: apples, oranges, bananas, grapes and a pineapple",
    "a vintage car with chrome bumpers parked in front of a diner with a neon sign",
    "the Eiffel Tower in Paris, the Colosseum in Rome, the Golden Gate Bridge",
    "the Mona Lisa by Leonardo da Vinci, The Starry Night by Vincent van Gogh",
    "a panda eating bamboo, a red fox in the snow, a pair of swans on a lake",
    "a wooden chair, a metal lamp, a glass vase, a ceramic mug, a cotton shirt",
    "square circle triangle star hexagon stripe dot grid checkerboard spiral",
    "red orange yellow green blue purple pink brown black white grey gray silver gold",
    "small large tiny huge round flat tall short long wide narrow bright dark",
    "left right top bottom front back above below inside outside between near far",
    "one two three four five six seven eight nine ten hundred thousand",
    "0 1 2 3 4 5 6 7 8 9 10 12 25 50 100 128 256 512 1024 2024",
    "Query: a photo of the entity. Candidate: a caption of the image. Answer: none.",
    "The retriever compresses the enhanced text into a single embedding for search.",
    "Images carry evidence that no text states, so the model must reason before it compresses.",
    "A qualitative inspection tool shows the query, the ground truth and the top results.",
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.",
    "Sphinx of black quartz, judge my vow! How vexingly quick daft zebras jump.",
    '"quoted text", (parentheses), [brackets], {braces}, <angles>, a/b, a-b, a_b, a:b, a;b.',
    "Mixed Case Words, ALL CAPS, lower case, Title Case, camelCase, snake_case.",
    "It's, don't, we're, they've, I'm, you'll, he'd: contractions are common in text.",
    "Paragraph one.\nParagraph two.\n\nA list:\n- item one\n- item two\n1. first\n2. second",
)


def _corpus() -> list[str]:
    """The training corpus: the fixed lines plus a deterministic combinatorial expansion."""
    colours = ("red", "blue", "green", "yellow", "black", "white", "silver", "brown")
    things = ("cube", "sphere", "dress", "shirt", "car", "bird", "tower", "bridge", "cat", "dog")
    places = ("on a table", "in a field", "near a river", "under a tree", "beside a wall")
    lines = list(_CORPUS_LINES)
    for c in colours:
        for t in things:
            for p in places:
                lines.append(f"a {c} {t} {p}. What is the {c} {t} {p}?")
    return lines


_PRESET_SPECS: dict[str, dict[str, Any]] = {
    "tiny-qwen2-vl": {"family": "qwen2_vl", "patch_size": 14, "default_system": True},
    "tiny-qwen2.5-vl": {"family": "qwen2_5_vl", "patch_size": 14, "default_system": True},
    "tiny-qwen3-vl": {"family": "qwen3_vl", "patch_size": 16, "default_system": False},
}

_TEXT_HIDDEN = 64
_TEXT_HEADS = 4  # head_dim 16: the three M-RoPE sections must sum to 8
_MERGE = 2
_TEMPORAL = 2


def resolve_tiny_preset(name: str) -> str | None:
    """The canonical preset for ``name`` (``tiny`` -> ``tiny-qwen2-vl``), or ``None``.

    Args:
        name: A model name as given by the user.

    Returns:
        One of :data:`TINY_PRESETS`, or ``None`` when ``name`` is not a tiny preset.
    """
    name = TINY_ALIASES.get(name, name)
    return name if name in TINY_PRESETS else None


def is_tiny_model(name: str) -> bool:
    """Whether ``name`` names a tiny preset (exact match on presets and aliases)."""
    return resolve_tiny_preset(name) is not None


def _canonical(preset: str) -> str:
    resolved = resolve_tiny_preset(preset)
    if resolved is None:
        valid = ", ".join([*TINY_PRESETS, *TINY_ALIASES])
        raise ConfigError(f"unknown tiny preset {preset!r}; valid presets: {valid}")
    return resolved


_TOKENIZER_CACHE: dict[str, Any] = {}
_TOKENIZER_LOCK = threading.Lock()


def check_transformers(version: str | None = None) -> None:
    """Check that ``transformers`` (``version``; default: the installed one) can build the
    presets.

    Raises:
        MissingExtraError: It is older than :data:`MIN_TRANSFORMERS` (or absent).
    """
    if version is None:
        version = require("transformers", "enhance").__version__
    from packaging.version import Version

    if Version(version) < Version(MIN_TRANSFORMERS):
        raise MissingExtraError(f"transformers>={MIN_TRANSFORMERS} (found {version})", "enhance")


def _build_tokenizer() -> Any:
    """Train the byte-level BPE on the fixed corpus and wrap it as a ``Qwen2Tokenizer``."""
    tokenizers = require("tokenizers", "enhance")
    check_transformers()  # names the package, not a submodule, when missing
    qwen2_tok = require("transformers.models.qwen2.tokenization_qwen2", "enhance")
    with _TOKENIZER_LOCK:
        if "bpe" not in _TOKENIZER_CACHE:
            bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
            bpe.normalizer = tokenizers.normalizers.NFC()
            bpe.pre_tokenizer = tokenizers.pre_tokenizers.Sequence(
                [
                    tokenizers.pre_tokenizers.Split(
                        tokenizers.Regex(qwen2_tok.PRETOKENIZE_REGEX), behavior="isolated"
                    ),
                    tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                ]
            )
            trainer = tokenizers.trainers.BpeTrainer(
                vocab_size=_BPE_VOCAB_SIZE,
                min_frequency=1,
                initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            )
            bpe.train_from_iterator(_corpus(), trainer=trainer)
            model = json.loads(bpe.to_str())["model"]
            merges = [
                tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]
            ]
            _TOKENIZER_CACHE["bpe"] = (dict(model["vocab"]), merges)
        vocab, merges = _TOKENIZER_CACHE["bpe"]
    vocab = dict(vocab)
    base = len(vocab)
    for i, token in enumerate(_SPECIAL_TOKENS):
        vocab[token] = base + i
    tokenizer = qwen2_tok.Qwen2Tokenizer(
        vocab=vocab,
        merges=list(merges),
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=list(_SPECIAL_TOKENS[1:]),
        model_max_length=32768,
        padding_side="left",
    )
    return tokenizer


def build_tiny_processor(preset: str = "tiny-qwen2-vl") -> ProcessorMixin:
    """Build the locally-made processor of a preset (tokenizer, image processor, template).

    Args:
        preset: One of :data:`TINY_PRESETS` or an alias.

    Returns:
        A ``Qwen2VLProcessor`` / ``Qwen2_5_VLProcessor`` / ``Qwen3VLProcessor``.

    Raises:
        ConfigError: If ``preset`` is unknown.
    """
    preset = _canonical(preset)
    spec = _PRESET_SPECS[preset]
    tf = require("transformers", "enhance")
    patch = spec["patch_size"]
    factor = patch * _MERGE
    pixels = {"min_pixels": factor * factor, "max_pixels": factor * factor * 4}
    common = {"patch_size": patch, "merge_size": _MERGE, "temporal_patch_size": _TEMPORAL}
    tokenizer = _build_tokenizer()
    template = _CHAT_TEMPLATE.replace(
        "{system}", _DEFAULT_SYSTEM_BLOCK if spec["default_system"] else ""
    )
    if spec["family"] == "qwen3_vl":
        mean_std = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
        image_processor = tf.Qwen2VLImageProcessor(**pixels, **common, **mean_std)
        video_processor = tf.Qwen3VLVideoProcessor(
            size={"shortest_edge": factor * factor, "longest_edge": factor * factor * 8},
            **common,
            **mean_std,
        )
        return tf.Qwen3VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            chat_template=template,
        )
    image_processor = tf.Qwen2VLImageProcessor(**pixels, **common)
    video_processor = tf.Qwen2VLVideoProcessor(**pixels, **common)
    cls = tf.Qwen2VLProcessor if spec["family"] == "qwen2_vl" else tf.Qwen2_5_VLProcessor
    return cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=template,
    )


def _build_config(preset: str, tokenizer: Any) -> Any:
    tf = require("transformers", "enhance")
    spec = _PRESET_SPECS[preset]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIAL_TOKENS}
    vocab_size = -(-len(tokenizer) // 64) * 64  # round up, as real checkpoints do
    special = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    text: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": _TEXT_HIDDEN,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": _TEXT_HEADS,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "initializer_range": 0.1,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
    }
    vision_common = {
        "depth": 2,
        "num_heads": 2,
        "in_channels": 3,
        "patch_size": spec["patch_size"],
        "spatial_merge_size": _MERGE,
        "temporal_patch_size": _TEMPORAL,
        "initializer_range": 0.1,
    }
    family = spec["family"]
    if family == "qwen2_vl":
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [2, 3, 3],
        }
        vision = {**vision_common, "embed_dim": 32, "hidden_size": _TEXT_HIDDEN, "mlp_ratio": 2}
        vision["depth"] = 1
        return tf.Qwen2VLConfig(text_config=text, vision_config=vision, **special)
    if family == "qwen2_5_vl":
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [2, 3, 3],
        }
        vision = {
            **vision_common,
            "hidden_size": 32,
            "intermediate_size": 64,
            "out_hidden_size": _TEXT_HIDDEN,
            "window_size": spec["patch_size"] * _MERGE * 2,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        }
        return tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **special)
    text["head_dim"] = _TEXT_HIDDEN // _TEXT_HEADS
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 5000000.0,
        "mrope_section": [4, 2, 2],
        "mrope_interleaved": True,
    }
    vision = {
        **vision_common,
        "hidden_size": 32,
        "intermediate_size": 64,
        "out_hidden_size": _TEXT_HIDDEN,
        "num_position_embeddings": 144,
        "deepstack_visual_indexes": [0],
    }
    return tf.Qwen3VLConfig(text_config=text, vision_config=vision, **special)


def _model_class(preset: str) -> Any:
    tf = require("transformers", "enhance")
    return {
        "qwen2_vl": tf.Qwen2VLForConditionalGeneration,
        "qwen2_5_vl": tf.Qwen2_5_VLForConditionalGeneration,
        "qwen3_vl": tf.Qwen3VLForConditionalGeneration,
    }[_PRESET_SPECS[preset]["family"]]


def _build_fresh(preset: str) -> tuple[PreTrainedModel, ProcessorMixin]:
    torch = require("torch", "enhance")
    tf = require("transformers", "enhance")
    processor = build_tiny_processor(preset)
    tokenizer = processor.tokenizer
    config = _build_config(preset, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = _model_class(preset)(config)
    model = model.to(torch.float32).eval()
    eos = [
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    ]
    model.generation_config = tf.GenerationConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    return model, processor


def _is_complete(path: Path, preset: str) -> bool:
    marker = path / MARKER_FILE
    if not marker.is_file():
        return False
    info = read_json_or_none(marker)
    if info is None:
        return False
    return info.get("preset") == preset and info.get("version") == TINY_VERSION


def _save(model: Any, processor: Any, target: Path, preset: str) -> None:
    """Save into a temporary sibling directory, then rename it into place (atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with quiet_progress():
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
        marker = {
            "preset": preset,
            "version": TINY_VERSION,
            "seed": TINY_SEED,
            "note": "randomly initialised weights; outputs are meaningless (tests and smoke runs)",
        }
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished first (target exists and is not empty): keep theirs.
            if not _is_complete(target, preset):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _load(path: Path, preset: str) -> tuple[PreTrainedModel, ProcessorMixin]:
    tf = require("transformers", "enhance")
    torch = require("torch", "enhance")
    with quiet_progress():
        processor = tf.AutoProcessor.from_pretrained(path)
        model = _model_class(preset).from_pretrained(path, dtype=torch.float32).eval()
    return model, processor


def tiny_model_dir(preset: str = "tiny-qwen2-vl") -> Path:
    """The local directory of a saved tiny preset, building and saving it on first use.

    The directory holds ``save_pretrained`` output of both the model and the processor, so
    ``AutoProcessor.from_pretrained(path)`` / ``AutoModelForImageTextToText.from_pretrained(path)``
    (and OpenAI-compatible servers that load local paths) can use it.

    Args:
        preset: One of :data:`TINY_PRESETS` or an alias.

    Returns:
        ``cache_dir()/tiny/<preset>-v1``.

    Raises:
        ConfigError: If ``preset`` is unknown.
        MissingExtraError: ``transformers`` is older than :data:`MIN_TRANSFORMERS`.
    """
    preset = _canonical(preset)
    check_transformers()
    path = cache_dir() / "tiny" / f"{preset}-{TINY_VERSION}"
    if not _is_complete(path, preset):
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)  # partial or stale: rebuild
        model, processor = _build_fresh(preset)
        _save(model, processor, path, preset)
        logger.info("saved tiny preset %s to %s", preset, path)
    return path


def build_tiny_vlm(
    preset: str = "tiny-qwen2-vl", *, cache: bool = True
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Build a tiny, randomly initialised Qwen-VL model and its local processor.

    The same preset always yields identical weights (seed :data:`TINY_SEED`) and the same
    tokenizer. Outputs are meaningless; use these models for offline smoke runs and tests.

    Args:
        preset: ``tiny-qwen2-vl`` (alias ``tiny``), ``tiny-qwen2.5-vl`` or ``tiny-qwen3-vl``.
        cache: If true, load from (building and saving on first use) :func:`tiny_model_dir`,
            exactly what a backend given the local path would load; if false, build in memory
            without touching the disk.

    Returns:
        ``(model, processor)``, the model in float32 on the CPU in eval mode.

    Raises:
        ConfigError: If ``preset`` is unknown.
    """
    preset = _canonical(preset)
    logger.warning(_MEANINGLESS, preset)
    if not cache:
        return _build_fresh(preset)
    return _load(tiny_model_dir(preset), preset)
