"""Resident ID cards at the kiosk: what a reader gives, the checks the node makes, and the
pluggable reader interface with a simulated reader for the demo and tests.

Real readers (GA/T 467 SAM module inside) are reached by the kiosk's browser through a vendor's
agent on 127.0.0.1; whatever reads the card, the node checks what arrives: an 18-character
number of GB 11643 (6-digit division, valid birth date, 3-digit serial, ISO 7064 MOD 11-2 check
character) and a name. The number is kept whole on the case (the desk needs it) and shown
masked on the kiosk's screen (``masked``).

Public: ``IdCard``, ``IdCardReader``, ``SimulatedReader``, ``check_id_number``, ``parse_card``,
``masked``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from vmesh.errors import ErrorList, FieldError

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


@dataclass(frozen=True)
class IdCard:
    name: str
    id_number: str
    sex: str = ""
    nation: str = ""
    birth: str = ""
    address: str = ""


class IdCardReader(Protocol):
    """Anything that reads a card: a vendor agent, a simulated reader."""

    async def read(self) -> IdCard: ...


def check_char(first17: str) -> str:
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def check_id_number(number: object) -> str | None:
    """Why ``number`` is not a valid 18-character ID number, or None when it is."""
    if not isinstance(number, str) or len(number) != 18:
        return "must be 18 characters"
    if not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        return "must be 17 digits and a digit or X"
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return f"birth date {number[6:14]} is not a date"
    if check_char(number[:17]) != number[17]:
        return "check character is wrong (GB 11643)"
    return None


def parse_card(doc: Any) -> IdCard:
    """An ``IdCard`` from a reader's JSON; ``InvalidInput`` naming each bad field."""
    errs = ErrorList()
    if not isinstance(doc, dict):
        errs.add(FieldError("card", "must be an object with name and id_number"))
        errs.raise_if_any("ID card refused")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 50:
        errs.add(FieldError("card.name", "must be a name of 1-50 characters"))
    number = doc.get("id_number")
    why = check_id_number(number)
    if why:
        errs.add(FieldError("card.id_number", why, None if number is None else str(number)))
    errs.raise_if_any("ID card refused")
    extra = {k: str(doc.get(k) or "")[:200] for k in ("sex", "nation", "birth", "address")}
    return IdCard(name=str(name).strip(), id_number=str(number), **extra)


def masked(number: str) -> str:
    return number[:6] + "*" * 8 + number[-4:] if len(number) == 18 else number


def _card(name: str, first17: str, sex: str, address: str) -> IdCard:
    number = first17 + check_char(first17)
    birth = f"{first17[6:10]}-{first17[10:12]}-{first17[12:14]}"
    return IdCard(name, number, sex, "汉", birth, address)


SAMPLE_CARDS = (
    _card("张阿大", "33048319520314251", "男", "浙江省桐乡市梧桐街道东安村12号"),
    _card("李秀英", "33010619580721032", "女", "浙江省杭州市西湖区转塘街道龙坞村5号"),
    _card("王德明", "33032819490905153", "男", "浙江省温州市文成县大峃镇新联村8号"),
)


class SimulatedReader:
    """Hands out the sample cards in turn (the demo's and the tests' card reader)."""

    def __init__(self, cards: tuple[IdCard, ...] = SAMPLE_CARDS) -> None:
        self.cards = cards
        self._n = 0

    async def read(self) -> IdCard:
        card = self.cards[self._n % len(self.cards)]
        self._n += 1
        return card
