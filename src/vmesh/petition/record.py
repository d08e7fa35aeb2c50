"""The signed record (笔录) of a petition session as a PDF: fpdf2 with the service desk's CJK
font (``vmesh.servicedesk.pdf.FONT``, Noto Sans CJK of Debian's fonts-noto-cjk); each paragraph
carries its offset into the session's recording (``[mm:ss]``); the petitioner's signature image
closes it.

Public: ``RecordDoc``, ``render``, ``offset_label``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from fpdf import FPDF

from vmesh.servicedesk.pdf import FONT

_SC = 2  # the collection's Simplified Chinese face, as the service desk uses it


@dataclass(frozen=True)
class RecordDoc:
    number: str
    petitioner: str
    id_masked: str
    room: str
    category: str
    subject: str
    officials: list[str]
    session: str
    started_at: str
    paragraphs: list[tuple[int, str, str]] = field(default_factory=list)  # offset s, clerk, text
    signature_png: bytes | None = None
    signed_at: str = ""


def offset_label(seconds: int) -> str:
    """``[mm:ss]`` (``[h:mm:ss]`` past an hour) into the recording."""
    h, rest = divmod(max(0, seconds), 3600)
    m, s = divmod(rest, 60)
    return f"[{h}:{m:02d}:{s:02d}]" if h else f"[{m:02d}:{s:02d}]"


def render(doc: RecordDoc, font: Path = FONT) -> bytes:
    if not font.exists():
        raise RuntimeError(f"font {font} is missing: install the Debian package fonts-noto-cjk")
    pdf = FPDF(format="A4")
    pdf.set_title(f"信访笔录 {doc.number}")
    pdf.set_creator("vmesh")
    pdf.add_page()
    pdf.add_font("cjk", "", str(font), collection_font_number=_SC)
    pdf.set_font("cjk", size=20)
    pdf.cell(0, 14, "远程视频接访笔录", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=11)
    pdf.cell(0, 8, f"信访件编号：{doc.number}", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    rows = [
        ("信访人", doc.petitioner),
        ("身份证号", doc.id_masked),
        ("接访地点", doc.room),
        ("类别", doc.category),
        ("反映事项", doc.subject),
        ("接访领导", "、".join(doc.officials)),
        ("会议/录像", doc.session),
        ("开始时间", doc.started_at),
    ]
    for label, value in rows:
        pdf.set_font("cjk", size=11)
        pdf.cell(30, 8, label, border=1)
        pdf.multi_cell(0, 8, value or "-", border=1, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("cjk", size=13)
    pdf.cell(0, 9, "笔录", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=11)
    for offset, clerk, text in doc.paragraphs:
        pdf.multi_cell(
            0, 7, f"{offset_label(offset)} {text}（记录：{clerk}）", new_x="LMARGIN", new_y="NEXT"
        )
        pdf.ln(1)
    if doc.signature_png:
        pdf.ln(4)
        pdf.cell(
            0, 8, "以上笔录我已看过，与我说的相符。信访人签名：", new_x="LMARGIN", new_y="NEXT"
        )
        pdf.image(io.BytesIO(doc.signature_png), w=60)
        pdf.cell(0, 8, f"签名时间：{doc.signed_at}", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
