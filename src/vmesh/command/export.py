"""After-action review: an incident's timeline as HTML and PDF (fpdf2 with the Noto Sans CJK
font of fonts-noto-cjk, as the service desk's result document: ``vmesh.servicedesk.pdf.FONT``).

The timeline lists every entry of the log (time, node, who, action, what), who joined (field
units, convened venues) and which feeds were on the room's wall from when to when.

Public: ``Timeline``, ``timeline``, ``html``, ``pdf``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path

from vmesh.command import core
from vmesh.servicedesk.pdf import _SC, FONT


@dataclass
class Timeline:
    incident: core.Incident
    rows: list[tuple[str, str, str, str, str]]  # at, node, who, action, what
    joined: list[tuple[str, str, str]] = field(default_factory=list)  # who, from, until
    feeds: list[tuple[str, str, str]] = field(default_factory=list)  # camera, from, until
    made_at: str = ""


def _t(d: datetime | None) -> str:
    return d.strftime("%Y-%m-%d %H:%M:%S") if d else ""


def _what(e: core.Entry) -> str:
    d = e.detail
    if e.action == "open":
        return f"{d['type']} · {d['title']} · {d['severity']} · {d['lat']:.5f},{d['lon']:.5f}"
    if e.action == "position":
        return f"{d['code']} {d['lat']:.5f},{d['lon']:.5f}"
    if e.action == "convene":
        return f"conference {d['conference']}: " + " ".join(d.get("venues", []))
    return " ".join(f"{k}={v}" for k, v in d.items() if v not in ("", None, []))


def timeline(inc: core.Incident, entries: list[core.Entry], now: datetime) -> Timeline:
    rows = [(_t(e.at), e.node, e.actor, e.action, _what(e)) for e in entries]
    joined: list[tuple[str, str, str]] = []
    feeds: list[tuple[str, str, str]] = []
    on: dict[str, datetime] = {}
    for e in entries:
        if e.action == "feed_on" and e.detail["code"] not in on:
            on[e.detail["code"]] = e.at
        elif e.action == "feed_off" and e.detail["code"] in on:
            feeds.append((e.detail["code"], _t(on.pop(e.detail["code"])), _t(e.at)))
        elif e.action == "convene":
            joined += [(f"venue {v}", _t(e.at), "") for v in e.detail.get("venues", [])]
    feeds += [(c, _t(t), "") for c, t in on.items()]
    joined += [(f"{u.name} ({u.code})", _t(u.joined_at), _t(u.left_at)) for u in inc.units.values()]
    return Timeline(inc, rows, joined, feeds, _t(now))


def html(tl: Timeline) -> str:
    i = tl.incident

    def table(head: tuple[str, ...], rows: list[tuple[str, ...]], cls: str) -> str:
        th = "".join(f"<th>{escape(h)}</th>" for h in head)
        tr = "".join(
            f'<tr class="{cls}">' + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>"
            for r in rows
        )
        return f"<table><thead><tr>{th}</tr></thead><tbody>{tr}</tbody></table>"

    return f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<title>{escape(i.title)} · 事件时间线</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #999;padding:3px 6px;font-size:13px;text-align:left}}</style></head><body>
<h1>{escape(i.title)}</h1>
<p>事件 {escape(i.id)} · {escape(i.type)} · 等级 {escape(i.severity)} · 状态 {escape(i.status)}
 · 发起 {escape(i.opened_by)} @ {escape(i.origin)} · 主持节点 {escape(i.host)}
 · 导出 {escape(tl.made_at)}</p>
<h2>参与者 Who joined</h2>{table(("who", "from", "until"), tl.joined, "joined")}
<h2>调看画面 Feeds watched</h2>{table(("camera", "from", "until"), tl.feeds, "feed")}
<h2>时间线 Every action ({len(tl.rows)})</h2>
{table(("at", "node", "who", "action", "what"), tl.rows, "action")}
</body></html>"""


def pdf(tl: Timeline, font: Path = FONT) -> bytes:
    from fpdf import FPDF, FontFace

    if not font.exists():
        raise RuntimeError(f"font {font} is missing: install the Debian package fonts-noto-cjk")
    i = tl.incident
    doc = FPDF(format="A4", orientation="L")
    doc.set_title(f"{i.title} {i.id}")
    doc.set_creator("vmesh")
    doc.add_page()
    doc.add_font("cjk", "", str(font), collection_font_number=_SC)
    doc.set_font("cjk", size=16)
    doc.cell(0, 10, i.title, new_x="LMARGIN", new_y="NEXT")
    doc.set_font("cjk", size=9)
    doc.multi_cell(
        0,
        5,
        f"事件 {i.id} · {i.type} · 等级 {i.severity} · 状态 {i.status} · 发起 "
        f"{i.opened_by} @ {i.origin} · 主持节点 {i.host} · 导出 {tl.made_at}",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    for title, head, rows in (
        ("参与者 Who joined", ("who", "from", "until"), tl.joined),
        ("调看画面 Feeds watched", ("camera", "from", "until"), tl.feeds),
        (f"时间线 Every action ({len(tl.rows)})", ("at", "node", "who", "action", "what"), tl.rows),
    ):
        doc.ln(3)
        doc.set_font("cjk", size=12)
        doc.cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
        doc.set_font("cjk", size=8)
        with doc.table(text_align="LEFT", headings_style=FontFace(emphasis=None)) as t:
            t.row(head)
            for r in rows:
                t.row([str(c) for c in r])
    return bytes(doc.output())
