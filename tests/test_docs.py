"""Every Python example in docs/api.md runs as written."""

import re

import pytest

from tests.helpers import REPO

GUIDE = REPO / "docs" / "api.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)


def _section(index: int) -> str:
    """The heading above example `index`, for the test id."""
    text = GUIDE.read_text()
    start = text.index(EXAMPLES[index])
    headings = re.findall(r"^## (.+)$", text[:start], flags=re.MULTILINE)
    return headings[-1].split(" (")[0] if headings else "intro"


@pytest.mark.parametrize("index", range(len(EXAMPLES)), ids=_section)
def test_guide_example_runs(index):
    code = compile(EXAMPLES[index], f"{GUIDE.name}[{index}]", "exec")
    exec(code, {})
