"""`etfuser evaluate` as a test calls it: its JSON summary, or its one-line refusal."""

from __future__ import annotations

import json

import pytest

from etfuser_hf.hub.cli import main


def evaluate(argv: list[str], capsys) -> dict:
    main(["evaluate", *argv])
    return json.loads(capsys.readouterr().out)


def refused(argv: list[str], capsys) -> str:
    """The error line of an `evaluate` call that must be refused: exit code 2, one line, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", *argv])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(error.strip().splitlines()) == 1 and "Traceback" not in error
    return error
