"""VLM enhancement: the policy, versioned prompts, backends, the generation store and runner.

``enhance(data_dir, out_dir, EnhanceConfig(...))`` writes an enhanced M-BEIR directory.
"""

from augret.enhance.config import DEFAULT_MODEL, EnhanceConfig
from augret.enhance.policy import Policy, Route, route
from augret.enhance.prompts import PromptSet, load_prompts
from augret.enhance.runner import enhance
from augret.enhance.store import GenerationStore

__all__ = [
    "DEFAULT_MODEL",
    "EnhanceConfig",
    "GenerationStore",
    "Policy",
    "PromptSet",
    "Route",
    "enhance",
    "load_prompts",
    "route",
]
