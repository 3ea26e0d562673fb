"""UniIR's text normalisation and instruction prefixing."""

from __future__ import annotations

__all__ = ["format_string", "instructed_text"]


def format_string(s: str | None) -> str:
    """Normalise text exactly as UniIR's ``format_string``.

    Drops ``\\r``, strips whitespace then double quotes, upper-cases the first character and
    appends a period unless the text already ends in ``.``, ``?`` or ``!``.

    Args:
        s: Text or ``None``.

    Returns:
        The normalised text; ``""`` for ``None`` or blank input.
    """
    s = (s or "").replace("\r", "").strip().strip('"')
    if s:
        s = s[0].upper() + s[1:]
        if s[-1] not in ".?!":
            s += "."
    return s


def instructed_text(prompt: str | None, text: str | None) -> str:
    """The query text UniIR embeds: ``format_string(format_string(prompt) + " " + text)``.

    With no prompt it is ``format_string(text)``. An image-only query with a prompt gets the
    prompt alone as its text, as in UniIR.
    """
    if not prompt:
        return format_string(text)
    return format_string(f"{format_string(prompt)} {text or ''}")
