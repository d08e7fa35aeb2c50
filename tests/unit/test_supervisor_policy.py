"""Restart back-off arithmetic and exit descriptions of the process supervisor."""

from __future__ import annotations

import pytest

from vmesh.node.supervisor import ProcessSpec, RestartPolicy, _describe_exit

pytestmark = pytest.mark.unit


def test_backoff_grows_exponentially_and_is_capped() -> None:
    p = RestartPolicy(initial_delay=0.5, factor=2, max_delay=3)
    assert [p.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3, 3, 3]


def test_exit_descriptions_name_status_or_signal() -> None:
    assert _describe_exit(3) == "exited with status 3"
    assert _describe_exit(-9) == "killed by signal SIGKILL"
    assert _describe_exit(-15) == "killed by signal SIGTERM"


def test_empty_argv_refused() -> None:
    with pytest.raises(ValueError, match="argv"):
        ProcessSpec(name="x", argv=[])
