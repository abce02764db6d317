"""`etfuser space`: its options, the Space app it starts (found beside the package source in a checkout), and the
message when the installed package has no checkout around it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from etfuser_hf.hub import cli


def test_space_cli_help_lists_model_and_port():
    result = subprocess.run([sys.executable, "-m", "etfuser_hf", "space", "--help"], capture_output=True, text=True,
                            check=True)
    assert result.stdout.startswith("usage: etfuser space [-h] [--model MODEL] [--port PORT]")
    assert "127.0.0.1" in result.stdout


def test_space_cli_finds_the_checkouts_app():
    assert cli.SPACE_APP.is_file() and cli.SPACE_APP.parent.name == "et-fuser"


def test_space_cli_without_the_space_folder_says_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "SPACE_APP", tmp_path / "site-packages" / "spaces" / "et-fuser" / "app.py")
    with pytest.raises(SystemExit) as exited:
        cli.main(["space"])
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("etfuser space: error: no Space app at ")
    assert "ships with the source repository, not with the installed package" in message


def test_space_cli_passes_model_and_port_to_the_app(tmp_path, monkeypatch):
    fake = tmp_path / "et-fuser" / "app.py"
    fake.parent.mkdir()
    (fake.parent / "sibling.py").write_text("WHERE = 'beside app.py'\n")
    fake.write_text("import json, sys, sibling\n"
                    f"open({str(tmp_path / 'argv.json')!r}, 'w').write(json.dumps([sys.argv[1:], sibling.WHERE]))\n")
    monkeypatch.setattr(cli, "SPACE_APP", fake)
    cli.main(["space", "--model", "runs/x/model", "--port", "7999"])
    assert json.loads((tmp_path / "argv.json").read_text()) == [["--model", "runs/x/model", "--port", "7999"],
                                                                "beside app.py"]
    cli.main(["space"])
    assert json.loads((tmp_path / "argv.json").read_text())[0] == ["--port", "7860"]
    cli.main(["space", "--concurrency", "3"])
    assert json.loads((tmp_path / "argv.json").read_text())[0] == ["--port", "7860", "--concurrency", "3"]


def test_space_cli_reports_the_apps_failure(tmp_path, monkeypatch):
    fake = tmp_path / "app.py"
    fake.write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(cli, "SPACE_APP", fake)
    with pytest.raises(SystemExit) as exited:
        cli.main(["space"])
    assert exited.value.code == 3
