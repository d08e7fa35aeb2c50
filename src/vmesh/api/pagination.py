"""Paging for every list: ``offset``/``limit`` in, ``{items, total, offset, limit}`` out."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

T = TypeVar("T")

MAX_LIMIT = 500


class PageParams(BaseModel):
    offset: int = 0
    limit: int = 50


def page_params(
    offset: Annotated[int, Query(ge=0, description="rows to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="rows per page")] = 50,
) -> PageParams:
    return PageParams(offset=offset, limit=limit)


class Page(BaseModel, Generic[T]):
    items: list[T]
    # ``total`` is exact up to ``total_capped_at`` rows; beyond that ``total_capped`` is true.
    total: int
    total_capped: bool = False
    offset: int
    limit: int
