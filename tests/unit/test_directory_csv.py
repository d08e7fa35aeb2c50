"""The import's CSV reading: plain lines split on commas give exactly what ``csv.reader`` gives."""

from __future__ import annotations

import csv
import io
import random

import pytest

from vmesh.directory import transfer
from vmesh.errors import InvalidInput

pytestmark = pytest.mark.unit


def reader_records(text: str) -> list[list[str]] | str:
    try:
        return list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:
        return "error"


def split_records(text: str) -> list[list[str]] | str:
    try:
        return list(transfer._csv_records(text))
    except InvalidInput:
        return "error"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "a,b",
        "a,b\n\n c,d \n",
        'a,b\nx,"y,z"\n1,2\n',  # a quoted comma after plain lines
        'a,b\nx,"y\nz"\n1,2',  # a quoted line break
        'a"b,c\nd,e\n',  # a quote inside an unquoted cell
        "a,b\r\nc,d\r\n",  # Windows line ends
        'h\n"never closed\n',
        "名称,编码\n西湖区,33\n",
    ],
)
def test_records_are_those_of_csv_reader(text: str) -> None:
    assert split_records(text) == reader_records(text)


def test_random_texts_read_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "_BLOCK", 7)  # blocks end inside and between lines too
    rng = random.Random(28181)
    for _ in range(5000):
        text = "".join(rng.choice('ab,\n" 西') for _ in range(rng.randint(0, 40)))
        assert split_records(text) == reader_records(text), repr(text)


def test_a_bad_row_after_plain_lines_is_named_by_its_line() -> None:
    # Lines 1-3 are split here, line 4 (quoted, over csv's field limit) is csv.reader's.
    text = "code,name\n1,a\n2,b\n" + '3,"' + "x" * (1 << 18) + '"\n'
    with pytest.raises(InvalidInput) as e:
        list(transfer._csv_records(text))
    assert [(x.field, x.reason) for x in e.value.errors] == [
        ("file", "is not valid CSV (line 4: field larger than field limit (131072))")
    ]
