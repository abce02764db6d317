"""The model card points at the Space: the generator's template and the committed card carry the same "Try it in a
browser" section, whose links resolve from the committed card's folder."""

from __future__ import annotations

import re
import sys

from space_fixtures import REPO_ROOT

from etfuser_hf.hub.model_card import build_model_card

sys.path.insert(0, str(REPO_ROOT / "tests" / "hub"))
from test_model_card import make_tiny_run  # noqa: E402  (the card tests' run folder)

CARD = REPO_ROOT / "model_cards" / "et-fuser" / "README.md"


def _space_section(text: str) -> str:
    match = re.search(r"^## Try it in a browser\n.*?(?=^## )", text, flags=re.M | re.S)
    assert match, "no 'Try it in a browser' section"
    return match.group(0)


def test_space_section_in_the_generated_and_the_committed_card(tmp_path):
    generated = _space_section(build_model_card(make_tiny_run(tmp_path / "run")).text)
    assert generated == _space_section(CARD.read_text())
    links = re.findall(r"\]\(([^)]+)\)", generated)
    assert links == ["../../spaces/et-fuser", "../../docs/space_screenshot.png"]
    assert (CARD.parent / links[0] / "app.py").is_file() and (CARD.parent / links[1]).is_file()
    assert "etfuser space" in generated
