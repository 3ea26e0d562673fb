"""The report's opening: short, plain answers to the paper's three questions (and the control).

1. Does training on enhanced data beat the raw baseline? (``fully_enhanced`` vs ``baseline``)
2. Does inference-only enhancement fall short of training on it? (``inference_only`` vs
   ``fully_enhanced``)
3. Which task types gain from query versus corpus enhancement? (``query_enhanced`` and
   ``corpus_enhanced`` vs ``baseline``, row by row)

and whether the negative control (``shuffled_control``) stayed at or below the baseline.

The answers read the numbers of ``results.json`` (:func:`plain_answers` takes its dict) and
use one rule (:mod:`augret.experiment.seeds`): "yes"/"no" only for an effect, that is a paired
test on seed-averaged scores at ``alpha`` *and* one sign in every seed; anything else is
"not shown", with the reason.
"""

from __future__ import annotations

from typing import Any

from augret.data.ids import eval_task

__all__ = ["CONTROL", "plain_answers"]

#: The negative-control condition (enhanced texts shuffled across items).
CONTROL = "shuffled_control"


def _seeds(c: dict[str, Any]) -> str:
    d = c["seed_deltas"]
    if len(d) < 2:
        return "one run per condition"
    return "per seed " + ", ".join(f"{x:+.1f}" for x in d)


def _why_not(c: dict[str, Any], alpha: float) -> str:
    if len(c["seed_deltas"]) < 2:
        return "with one run per condition training noise is not measured"
    if not c["consistent"]:
        return "the sign changes between seeds"
    return f"p = {c['p_value']:.2g} ≥ {alpha:g}"


def _numbers(c: dict[str, Any], a: str, b: str) -> str:
    return (f"{b} {c['b']:.1f} vs {a} {c['a']:.1f} on the local average (Δ {c['delta']:+.1f}; "
            f"{_seeds(c)}; p = {c['p_value']:.2g})")


def _union(c: dict[str, Any] | None, alpha: float) -> str:
    if not c:
        return ""
    how = ("the same sign in every seed" if c["effect"] else
           f"not an effect: {_why_not(c, alpha)}")
    return f" Union pool: Δ {c['delta']:+.1f} ({how})."


def _training_beats_raw(data: dict[str, Any]) -> dict[str, str] | None:
    comp = data["average_comparisons"].get("fully_enhanced") or {}
    local = comp.get("local")
    if not local:
        return None
    alpha, base = data["alpha"], data["baseline"]
    numbers = _numbers(local, base, "fully_enhanced")
    if local["effect"] and local["delta"] > 0:
        text = f"Yes: {numbers}, higher in every seed."
    elif local["effect"]:
        text = f"No, it is worse: {numbers}, lower in every seed."
    else:
        text = f"Not shown: {numbers}; {_why_not(local, alpha)}."
    return {"question": "Does training on enhanced data beat the raw baseline?",
            "answer": text + _union(comp.get("union"), alpha)}


def _inference_only(data: dict[str, Any]) -> dict[str, str] | None:
    contrast = data["contrasts"].get("inference_only vs fully_enhanced") or {}
    local = contrast.get("local")
    if not local:
        return None
    alpha = data["alpha"]
    numbers = _numbers(local, "fully_enhanced", "inference_only")
    if local["effect"] and local["delta"] < 0:
        text = (f"Yes: the retriever trained on raw text and given enhanced text only at test "
                f"time scores below the one trained on it: {numbers}, lower in every seed.")
    elif local["effect"]:
        text = f"No, it scores higher: {numbers}, higher in every seed."
    else:
        text = f"Not shown: {numbers}; {_why_not(local, alpha)}."
    vs_base = (data["average_comparisons"].get("inference_only") or {}).get("local")
    if vs_base:
        if vs_base["effect"]:
            side = "above" if vs_base["delta"] > 0 else "below"
            text += (f" Against the raw baseline it is {side} in every seed "
                     f"(Δ {vs_base['delta']:+.1f}, p = {vs_base['p_value']:.2g}).")
        else:
            text += (f" Against the raw baseline: Δ {vs_base['delta']:+.1f}, not an effect "
                     f"({_why_not(vs_base, alpha)}).")
    return {"question": "Does inference-only enhancement fall short of training on it?",
            "answer": text}


def _rows(data: dict[str, Any], condition: str, sign: int) -> list[str]:
    out = []
    for c in data["comparisons"].get(condition, []):
        if c["pool"] == "local" and c["effect"] and c["delta"] * sign > 0:
            t = eval_task(c["task"])
            out.append(f"{t.dataset.name} {t.task.short} ({100 * c['delta']:+.1f})")
    return out


def _task_types(data: dict[str, Any]) -> dict[str, str] | None:
    parts = []
    for condition, what in (("query_enhanced", "Query enhancement"),
                            ("corpus_enhanced", "Corpus enhancement")):
        if condition not in data["comparisons"]:
            continue
        gains, losses = _rows(data, condition, +1), _rows(data, condition, -1)
        text = f"{what} ({condition}) gains on " + ("; ".join(gains) if gains else "no task")
        if losses:
            text += "; loses on " + "; ".join(losses)
        parts.append(text + ".")
    if not parts:
        return None
    parts.append("(Local pools; a gain is an effect: p < "
                 f"{data['alpha']:g} on seed-averaged scores and higher in every seed. The "
                 "paper: corpus enhancement chiefly helps knowledge-intensive tasks such as "
                 "OVEN, InfoSeek and WebQA; query enhancement is critical for compositional "
                 "modification tasks such as CIRR and FashionIQ.)")
    return {"question": "Which task types gain from query versus corpus enhancement?",
            "answer": " ".join(parts)}


def _control(data: dict[str, Any]) -> dict[str, str] | None:
    local = (data["average_comparisons"].get(CONTROL) or {}).get("local")
    if not local:
        return None
    numbers = _numbers(local, data["baseline"], CONTROL)
    if local["effect"] and local["delta"] > 0:
        text = (f"Warning: the control beats the baseline ({numbers}, higher in every seed): "
                "something other than the content of the enhanced text lifts the scores, so "
                "the gains above are suspect.")
    elif local["effect"]:
        text = (f"As it must, the control stays below the baseline: {numbers}, lower in every "
                "seed.")
    else:
        text = (f"As it must, the control does not beat the baseline: {numbers}; "
                f"{_why_not(local, data['alpha'])}.")
    above = _rows(data, CONTROL, +1)
    if above:
        text += (" Row by row it is above the baseline in every seed on " + "; ".join(above)
                 + ": there, training on uninformative text alone lifts the score.")
    return {"question": "Control: do shuffled enhanced texts (same form, wrong items) help?",
            "answer": text}


def plain_answers(data: dict[str, Any]) -> list[dict[str, str]]:
    """The answers that the conditions present allow, in the paper's order, then the control.

    Args:
        data: The report's ``results.json`` content (before the answers are added).

    Returns:
        ``[{"question": ..., "answer": ...}]``; empty without a baseline.
    """
    if not data.get("baseline"):
        return []
    answers = [_training_beats_raw(data), _inference_only(data), _task_types(data),
               _control(data)]
    return [a for a in answers if a is not None]
