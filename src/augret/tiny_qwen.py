"""The locally built Qwen tokenizer and image processor of augret's tiny random-init models.

Shared by the tiny generation presets (:mod:`augret.enhance.tiny`) and the tiny embedder
(:mod:`augret.encode.mllm.tiny`), which know nothing of each other: a byte-level BPE trained
with ``tokenizers`` on a fixed corpus (so it is deterministic), Qwen's special tokens, the
Qwen image processor of each family with small pixel limits, and a Qwen-style chat template.
Nothing is downloaded.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from augret._lazy import require
from augret.errors import MissingExtraError

__all__ = ["FAMILIES", "MERGE_SIZE", "MIN_TRANSFORMERS", "PATCH_SIZES", "SPECIAL_TOKENS",
           "TEMPORAL_PATCH_SIZE", "build_qwen_processor", "check_transformers"]

#: The oldest ``transformers`` the tiny models build with (the floor ``pyproject.toml``
#: declares): their tokenizer is made from an in-memory vocabulary and merges
#: (``Qwen2Tokenizer(vocab=..., merges=...)``), which transformers 5 introduced; 4.x wants
#: vocabulary and merges files.
MIN_TRANSFORMERS = "5.0"

#: The Qwen-VL families a processor is built for.
FAMILIES: tuple[str, ...] = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
#: Vision patch size per family.
PATCH_SIZES: dict[str, int] = {"qwen2_vl": 14, "qwen2_5_vl": 14, "qwen3_vl": 16}
#: Spatial merge (2 × 2 patches per visual token) and temporal patch size of every family.
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2

#: Qwen's chat and vision special tokens, in Qwen's id order (Qwen2-VL to Qwen3-VL); the tiny
#: tokenizer appends them to its learned BPE vocabulary.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
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


_TOKENIZER_CACHE: dict[str, Any] = {}
_TOKENIZER_LOCK = threading.Lock()


def check_transformers(version: str | None = None, *, extra: str = "enhance") -> None:
    """Check that ``transformers`` (``version``; default: the installed one) can build the
    tiny models.

    Args:
        version: The version to check; default: the installed one.
        extra: The augret extra named in the install hint.

    Raises:
        MissingExtraError: It is older than :data:`MIN_TRANSFORMERS` (or absent).
    """
    if version is None:
        version = require("transformers", extra).__version__
    from packaging.version import Version

    if Version(version) < Version(MIN_TRANSFORMERS):
        raise MissingExtraError(f"transformers>={MIN_TRANSFORMERS} (found {version})", extra)


def _build_tokenizer(extra: str) -> Any:
    """Train the byte-level BPE on the fixed corpus and wrap it as a ``Qwen2Tokenizer``."""
    tokenizers = require("tokenizers", extra)
    check_transformers(extra=extra)  # names the package, not a submodule, when missing
    qwen2_tok = require("transformers.models.qwen2.tokenization_qwen2", extra)
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
    for i, token in enumerate(SPECIAL_TOKENS):
        vocab[token] = base + i
    tokenizer = qwen2_tok.Qwen2Tokenizer(
        vocab=vocab,
        merges=list(merges),
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=list(SPECIAL_TOKENS[1:]),
        model_max_length=32768,
        padding_side="left",
    )
    return tokenizer


def build_qwen_processor(family: str, *, extra: str = "train") -> Any:
    """The locally made processor of a family (tokenizer, image processor, chat template).

    Args:
        family: One of :data:`FAMILIES`.
        extra: The augret extra named in the install hint when transformers is missing.

    Returns:
        A ``Qwen2VLProcessor`` / ``Qwen2_5_VLProcessor`` / ``Qwen3VLProcessor``.

    Raises:
        ValueError: An unknown family.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown Qwen-VL family {family!r}; expected one of {FAMILIES}")
    tf = require("transformers", extra)
    patch = PATCH_SIZES[family]
    factor = patch * MERGE_SIZE
    pixels = {"min_pixels": factor * factor, "max_pixels": factor * factor * 4}
    common = {"patch_size": patch, "merge_size": MERGE_SIZE,
              "temporal_patch_size": TEMPORAL_PATCH_SIZE}
    tokenizer = _build_tokenizer(extra)
    # Qwen3-VL's template has no default system message; Qwen2/2.5-VL's adds one
    template = _CHAT_TEMPLATE.replace(
        "{system}", "" if family == "qwen3_vl" else _DEFAULT_SYSTEM_BLOCK)
    if family == "qwen3_vl":
        mean_std = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
        image_processor = tf.Qwen2VLImageProcessor(**pixels, **common, **mean_std)
        video_processor = tf.Qwen3VLVideoProcessor(
            size={"shortest_edge": factor * factor, "longest_edge": factor * factor * 8},
            **common, **mean_std)
        return tf.Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                   video_processor=video_processor, chat_template=template)
    image_processor = tf.Qwen2VLImageProcessor(**pixels, **common)
    video_processor = tf.Qwen2VLVideoProcessor(**pixels, **common)
    cls = tf.Qwen2VLProcessor if family == "qwen2_vl" else tf.Qwen2_5_VLProcessor
    return cls(image_processor=image_processor, tokenizer=tokenizer,
               video_processor=video_processor, chat_template=template)
