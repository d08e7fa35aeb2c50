"""The result document (办理结果) of a case as a PDF, rendered by the server with fpdf2 and the
Noto Sans CJK font of Debian's fonts-noto-cjk (Simplified Chinese face of the collection).

Public: ``FONT``, ``ResultDoc``, ``render``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from fpdf import FPDF

FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
_SC = 2  # the collection's Simplified Chinese face


@dataclass(frozen=True)
class ResultDoc:
    title: str
    number: str
    department: str
    applicant: str
    id_masked: str
    village: str
    agent: str
    outcome: str
    issued_at: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    materials: list[str] = field(default_factory=list)
    signature_png: bytes | None = None


def render(doc: ResultDoc, font: Path = FONT) -> bytes:
    if not font.exists():
        raise RuntimeError(f"font {font} is missing: install the Debian package fonts-noto-cjk")
    pdf = FPDF(format="A4")
    pdf.set_title(f"{doc.title} {doc.number}")
    pdf.set_creator("vmesh")
    pdf.add_page()
    pdf.add_font("cjk", "", str(font), collection_font_number=_SC)
    pdf.set_font("cjk", size=20)
    pdf.cell(0, 14, doc.title, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=11)
    pdf.cell(0, 8, f"办件编号：{doc.number}", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    rows = [
        ("承办部门", doc.department),
        ("申请人", doc.applicant),
        ("身份证号", doc.id_masked),
        ("申办地点", doc.village),
        *doc.fields,
        ("办理结果", doc.outcome),
        ("经办人", doc.agent),
        ("出具时间", doc.issued_at),
    ]
    for label, value in rows:
        pdf.set_font("cjk", size=12)
        pdf.cell(35, 9, label, border=1)
        pdf.multi_cell(0, 9, value or "-", border=1, new_x="LMARGIN", new_y="NEXT")
    if doc.materials:
        pdf.ln(3)
        pdf.set_font("cjk", size=10)
        pdf.multi_cell(
            0,
            6,
            "已核验材料：" + "、".join(doc.materials) + "（经与原件核对无误）",
            new_x="LMARGIN",
            new_y="NEXT",
        )
    if doc.signature_png:
        pdf.ln(4)
        pdf.set_font("cjk", size=11)
        pdf.cell(0, 8, "申请人签名：", new_x="LMARGIN", new_y="NEXT")
        pdf.image(io.BytesIO(doc.signature_png), w=60)
    pdf.ln(6)
    pdf.set_font("cjk", size=9)
    pdf.multi_cell(0, 5, "本结果单经远程视频申办出具。", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
