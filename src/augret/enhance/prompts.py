"""Versioned prompt sets (data files under ``augret/enhance/prompt_sets/``) and chat messages."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from augret.enhance.policy import Route
from augret.errors import ConfigError, DataNotFoundError

__all__ = ["DEFAULT_PROMPTS", "PromptSet", "load_prompts"]

DEFAULT_PROMPTS = "v1"
_ROUTE_KEYS = {"system", "instruction", "examples", "user_template"}
_GENERATING = ("entity_rewrite", "condense", "caption_query", "caption_candidate")


@dataclass(frozen=True)
class PromptSet:
    """The prompts of every generating route, with a version id and a content digest."""

    version: str
    digest: str
    routes: dict[str, dict[str, Any]]

    @property
    def id(self) -> str:
        """``<version>@<digest>``: what outputs record as their prompt version."""
        return f"{self.version}@{self.digest}"

    def messages(self, route: Route, text: str | None) -> list[dict[str, Any]]:
        """The chat messages of one item (HF multimodal format, image placeholder first).

        Args:
            route: The item's route (must generate).
            text: The item's text; used only when the route sends text.
        """
        spec = self.routes[route.kind]
        parts = [spec["instruction"].format(max_words=route.max_words)]
        examples = spec.get("examples") or []
        if examples:
            lines = ["Examples:"]
            for ex in examples:
                if "image" in ex:
                    lines.append(f"Image: {ex['image']}")
                if "input" in ex:
                    lines.append(f"Input: {ex['input']}")
                lines.append(f"Output: {ex['output']}")
            parts.append("\n".join(lines))
        if route.send_text:
            parts.append(spec["user_template"].format(text=text or ""))
        content: list[dict[str, Any]] = []
        if route.send_image:
            content.append({"type": "image"})
        content.append({"type": "text", "text": "\n\n".join(parts)})
        return [
            {"role": "system", "content": [{"type": "text", "text": spec["system"]}]},
            {"role": "user", "content": content},
        ]


def load_prompts(name_or_path: str | Path = DEFAULT_PROMPTS) -> PromptSet:
    """Load a shipped prompt set by name (``"v1"``) or a YAML file of the same shape.

    Raises:
        ConfigError: The file lacks a route or a key.
    """
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise DataNotFoundError(f"{p}: no such prompt file")
        raw = p.read_bytes()
    else:
        ref = resources.files("augret.enhance.prompt_sets").joinpath(f"{name_or_path}.yaml")
        if not ref.is_file():
            raise ConfigError(f"unknown prompt set {name_or_path!r}; shipped: {DEFAULT_PROMPTS!r}")
        raw = ref.read_bytes()
    data = yaml.safe_load(raw)
    if not isinstance(data, dict) or "version" not in data or "routes" not in data:
        raise ConfigError(f"prompt set {name_or_path}: needs 'version' and 'routes'")
    for kind in _GENERATING:
        spec = data["routes"].get(kind)
        if not isinstance(spec, dict) or not set(spec) >= _ROUTE_KEYS:
            raise ConfigError(f"prompt set {name_or_path}: route {kind!r} needs keys "
                              f"{sorted(_ROUTE_KEYS)}")
    return PromptSet(str(data["version"]), hashlib.sha256(raw).hexdigest()[:12], data["routes"])
