"""The HTML of the side-by-side viewer (see :mod:`augret.experiment.viewer`)."""

from __future__ import annotations

from html import escape
from typing import Any

from augret.data.ids import eval_task

__all__ = ["render_page"]

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f4f5f7;
color:#1d232b}
header.top{background:#1d2b3a;color:#fff;padding:14px 22px}header.top h1{margin:0;font-size:20px}
header.top p{margin:4px 0 0;color:#c9d3de;font-size:13px}
header.top p.notice{color:#ffe066;font-weight:600}
main{padding:14px 22px;max-width:1500px}
table.sum{border-collapse:collapse;background:#fff;margin:8px 0 18px}
table.sum td,table.sum th{border:1px solid #d5d9e0;padding:4px 10px;text-align:right}
table.sum td:first-child,table.sum th:first-child{text-align:left}
h2{font-size:17px;margin:22px 0 8px;border-bottom:2px solid #1d2b3a;padding-bottom:3px}
section.q{background:#fff;border:1px solid #d5d9e0;border-left:6px solid #9aa5b1;border-radius:6px;
margin:0 0 14px;padding:10px 14px}
section.q.win{border-left-color:#2f9e44}section.q.loss{border-left-color:#e03131}
.qh{font-weight:600;margin-bottom:6px}.qh .d{float:right;font-weight:600}
.win .d{color:#2f9e44}.loss .d{color:#e03131}
.query{display:flex;gap:12px;align-items:flex-start;margin-bottom:8px}
.query .txt div{margin:2px 0}.lab{color:#68727d;font-size:12px;display:inline-block;min-width:78px}
.rw{color:#1864ab}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:14px}
.col h4{margin:4px 0;font-size:13px}
ol.res{list-style:none;margin:0;padding:0}
ol.res li{display:flex;gap:8px;align-items:flex-start;border:2px solid transparent;
border-radius:5px;padding:3px;margin:2px 0;background:#fafbfc}
ol.res li.hit{border-color:#2f9e44;background:#ebfbee}
.rk{font-weight:700;width:20px;text-align:right;flex:none}
.meta{color:#68727d;font-size:11px}.cap{color:#1864ab;font-size:12px}
img.th{border-radius:3px;flex:none;object-fit:contain;background:#e9ecef}
.noimg{display:inline-flex;align-items:center;justify-content:center;background:#e9ecef;
color:#868e96;font-size:10px;text-align:center;flex:none;border-radius:3px}
.gt{margin-top:8px;padding-top:6px;border-top:1px dashed #d5d9e0}
.gth{margin-bottom:3px}
.gt .item{display:inline-flex;gap:6px;align-items:flex-start;margin:2px 14px 2px 0;max-width:46%}
.tag{display:inline-block;font-size:11px;border-radius:3px;padding:0 5px;margin-left:4px}
.tag.ok{background:#d3f9d8;color:#2b8a3e}.tag.no{background:#ffe3e3;color:#c92a2a}
nav a{margin-right:8px;font-size:12px}
"""


def _img(ctx: Any, rel: str | None, size: int) -> str:
    if not rel:
        return ""
    uri = ctx.image(rel)
    if uri is None:
        reason = "missing image" if not ctx.data.resolve_image(rel).is_file() else "image omitted"
        return (f'<span class="noimg" style="width:{size}px;height:{size}px" '
                f'title="{escape(rel)}">{reason}</span>')
    return (f'<img class="th" src="{uri}" width="{size}" height="{size}" '
            f'alt="{escape(rel)}" title="{escape(rel)}">')


def _cand(ctx: Any, did: str, size: int) -> str:
    c = ctx.cands.get(did)
    if c is None:
        return f'<div><div class="meta">{escape(did)} (not in the pool files)</div></div>'
    enh = ctx.enh_cands.get(did)
    text = c.raw_text or ""  # the data dir may itself be enhanced
    vlm = enh.txt if enh is not None else (c.txt if "txt_raw" in c.extra else None)
    parts = [_img(ctx, c.img_path, size), "<div>"]
    if text:
        parts.append(f"<div>{escape(text[:300])}</div>")
    if vlm and vlm != text:
        who = _source(enh if enh is not None else c)
        parts.append(f'<div class="cap">{who}: {escape(vlm[:300])}</div>')
    parts.append(f'<div class="meta">{escape(did)} · {escape(c.modality)}</div></div>')
    return "".join(parts)


def _source(record: Any) -> str:
    """Who wrote an enhanced text: ``VLM``, or the simulated reference captioner."""
    info = record.extra.get("enhancement") or {}
    return "reference (simulated VLM)" if info.get("simulated") else "VLM"


def _ranking(ctx: Any, system: str, e: Any, positives: set[str]) -> str:
    label = ctx.label_a if system == "a" else ctx.label_b
    score = e.a if system == "a" else e.b
    m = eval_task(e.task).reported_metric
    items = []
    for rank, (did, s) in enumerate(ctx.ranking(system, e.task, e.qid), 1):
        cls = ' class="hit"' if did in positives else ""
        items.append(f'<li{cls}><span class="rk">{rank}</span>{_cand(ctx, did, 64)}'
                     f'<span class="meta">{s:.3f}</span></li>')
    if not items:
        items.append('<li><span class="meta">no results</span></li>')
    return (f'<div class="col"><h4>{escape(label)} · {m} = {score:g}</h4>'
            f'<ol class="res">{"".join(items)}</ol></div>')


def _query_block(ctx: Any, e: Any) -> str:
    raw = ctx.raw_queries.get(e.qid)
    if raw is None:
        return f'<div class="query meta">query {escape(e.qid)} not in the query file</div>'
    enh = ctx.enh_queries.get(e.qid) or (raw if "query_txt_raw" in raw.extra else None)
    raw_text = raw.raw_text or ""
    lines = [f'<div><span class="lab">query</span>{escape(raw_text) or "<i>(image only)</i>"}'
             "</div>"]
    if enh is not None and (enh.query_txt or "") != raw_text:
        who = "reference" if _source(enh) != "VLM" else "rewritten"
        lines.append(f'<div class="rw"><span class="lab">{who}</span>'
                     f'{escape(enh.query_txt or "")}</div>')
    status = (enh.extra.get("enhancement") or {}).get("status") if enh is not None else None
    meta = f"{escape(raw.query_modality)}" + (f" · enhancement: {escape(status)}" if status else "")
    lines.append(f'<div class="meta">{meta}</div>')
    return (f'<div class="query">{_img(ctx, raw.query_img_path, 128)}'
            f'<div class="txt">{"".join(lines)}</div></div>')


def _ground_truth(ctx: Any, e: Any, positives: list[str]) -> str:
    items = []
    ranks = {s: [d for d, _ in ctx.ranking(s, e.task, e.qid)] for s in ("a", "b")}
    for did in positives[:3]:
        tags = []
        for s, label in (("a", ctx.label_a), ("b", ctx.label_b)):
            r = ranks[s].index(did) + 1 if did in ranks[s] else None
            tags.append(f'<span class="tag {"ok" if r else "no"}">{escape(label)}: '
                        f'{f"#{r}" if r else f"not in top {ctx.k}"}</span>')
        items.append(f'<span class="item">{_cand(ctx, did, 48)}{"".join(tags)}</span>')
    more = f" (+{len(positives) - 3} more)" if len(positives) > 3 else ""
    return (f'<div class="gt"><div class="gth"><b>Ground truth</b> ({len(positives)} '
            f'relevant{more})</div>{"".join(items)}</div>')


def _card(ctx: Any, e: Any, n: int) -> str:
    t = eval_task(e.task)
    positives = ctx.positives.get(e.qid, [])
    cls = "win" if (e.delta, e.tie) > (0, 0) else "loss" if (e.delta, e.tie) < (0, 0) else ""
    head = (f'<div class="qh">{n}. {t.task.paper_number} {escape(t.task.short)} · '
            f'{escape(t.dataset.name)} · qid {escape(e.qid)}'
            f'<span class="d">Δ {t.reported_metric} {e.delta:+g}</span></div>')
    cols = (f'<div class="cols">{_ranking(ctx, "a", e, set(positives))}'
            f'{_ranking(ctx, "b", e, set(positives))}</div>')
    return (f'<section class="q {cls}" id="q{n}">{head}{_query_block(ctx, e)}{cols}'
            f'{_ground_truth(ctx, e, positives)}</section>')


def _summary(ctx: Any, means: dict[str, tuple[float, float, int, int, int]]) -> str:
    rows = []
    for task, (a, b, wins, losses, n) in means.items():
        t = eval_task(task)
        rows.append(f"<tr><td>{t.task.paper_number} {escape(t.task.short)} "
                    f"{escape(t.dataset.name)}</td><td>{t.reported_metric}</td>"
                    f"<td>{100 * a:.1f}</td><td>{100 * b:.1f}</td><td>{100 * (b - a):+.1f}</td>"
                    f"<td>{wins}</td><td>{losses}</td><td>{n}</td></tr>")
    return (f'<table class="sum"><tr><th>task</th><th>metric</th><th>{escape(ctx.label_a)}</th>'
            f"<th>{escape(ctx.label_b)}</th><th>Δ</th><th>B better</th><th>A better</th>"
            f"<th>queries</th></tr>{''.join(rows)}</table>")


def render_page(ctx: Any, shown: list[Any], means: dict[str, tuple[float, float, int, int, int]],
                title: str) -> str:
    """The whole page."""
    changed = [e for e in shown if e.section == "changed"]
    sampled = [e for e in shown if e.section != "changed"]
    body, n = [], 0
    for heading, group, note in (
        ("Most changed queries", changed, f"largest |Δ| of the reported metric between "
         f"{ctx.label_a} and {ctx.label_b} (ties: reciprocal rank), wins and losses alternating"),
        ("Sampled queries", sampled, "a seeded random sample of the other queries"),
    ):
        if not group:
            continue
        body.append(f"<h2>{heading}</h2><p class='meta'>{escape(note)}</p>")
        for e in group:
            n += 1
            body.append(_card(ctx, e, n))
    nav = " ".join(f'<a href="#q{i}">{i}</a>' for i in range(1, n + 1))
    omitted = (f" · {ctx.thumbs.omitted} image(s) not embedded (missing, unreadable or over the "
               "page size cap)" if ctx.thumbs.omitted else "")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
            f'<header class="top"><h1>{escape(title)}</h1><p>A = {escape(ctx.label_a)}, '
            f"B = {escape(ctx.label_b)} · top {ctx.k} per system · green: relevant (qrels) · "
            f"{ctx.pool} pools · data {escape(str(ctx.data.root))}{omitted}</p>"
            + (f'<p class="notice">{escape(ctx.notice)}</p>' if ctx.notice else "")
            + "</header>"
            f"<main>{_summary(ctx, means)}<nav>{nav}</nav>{''.join(body)}</main></body></html>\n")
