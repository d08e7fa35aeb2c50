"""docs/configuration.md documents every configuration key, and its example is a valid file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from vmesh.config import NodeConfig, parse_config

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _sections() -> dict[str, str]:
    """Body text under each ``## [section]`` heading."""
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^## \[(\w+)\]\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_key_has_a_row_in_its_section() -> None:
    documented = _sections()
    missing = []
    for section, field in NodeConfig.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        body = documented.get(section, "")
        missing += [
            f"[{section}] {key}" for key in model.model_fields if f"| `{key}` |" not in body
        ]
    assert not missing, f"docs/configuration.md does not document: {', '.join(missing)}"


def test_no_documented_key_is_unknown_to_the_node() -> None:
    for section, body in _sections().items():
        model = NodeConfig.model_fields[section].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key in re.findall(r"^\| `(\w+)` \|", body, flags=re.M):
            assert key in model.model_fields, f"[{section}] {key} is documented but not a key"


def test_example_configuration_is_accepted() -> None:
    example = re.search(r"## Example\s+```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert example is not None
    cfg = parse_config(tomllib.loads(example.group(1)))
    assert cfg.node.tier == "county" and cfg.database.url.startswith("postgresql+asyncpg://")
