"""Helpers shared by tests: real data beside the repo, skipped with a reason when absent."""
import pathlib

import pytest

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(relative: str) -> pathlib.Path:
    """Path under ../shared/data, or skip the calling test saying where it looked."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not found at {path} (the ../shared folder beside the repo)")
    return path
