"""Every fleet test needs the whole fleet up: say so once, instead of failing test by test."""

from __future__ import annotations

import pytest
from fleet import not_running


@pytest.fixture(autouse=True, scope="session")
def fleet_is_up() -> None:
    if down := not_running():
        pytest.fail(f"not running: {', '.join(down)}: converge the fleet first")
