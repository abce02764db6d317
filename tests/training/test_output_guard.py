"""prepare_output_dir / prepare_output_files: an earlier run is never silently overwritten."""

from __future__ import annotations

import pytest

from etfuser_hf.training.report.output_guard import OutputExistsError, prepare_output_dir, prepare_output_files


def test_new_and_empty_folders_are_accepted(tmp_path):
    assert prepare_output_dir(tmp_path / "a" / "b", overwrite=False).is_dir()
    (tmp_path / "empty").mkdir()
    assert prepare_output_dir(tmp_path / "empty", overwrite=False) == tmp_path / "empty"


def test_a_non_empty_folder_is_refused_unless_overwrite_or_resume(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    with pytest.raises(OutputExistsError, match=r"run exists and is not empty.*pass --overwrite"):
        prepare_output_dir(tmp_path / "run", overwrite=False)
    assert prepare_output_dir(tmp_path / "run", overwrite=True) == tmp_path / "run"
    assert prepare_output_dir(tmp_path / "run", overwrite=False, resume=True) == tmp_path / "run"
    assert (tmp_path / "run" / "metrics.json").read_text() == "{}"  # nothing is deleted


def test_a_file_in_place_of_the_folder_is_refused(tmp_path):
    (tmp_path / "run").write_text("x")
    with pytest.raises(OutputExistsError, match="is an existing file"):
        prepare_output_dir(tmp_path / "run", overwrite=True)


def test_output_files(tmp_path):
    card = tmp_path / "cards" / "README.md"
    assert prepare_output_files([card], overwrite=False) == [card] and card.parent.is_dir()
    card.write_text("old")
    with pytest.raises(OutputExistsError, match=r"README.md already exist; pass --overwrite"):
        prepare_output_files([card], overwrite=False)
    assert prepare_output_files([card], overwrite=True) == [card]
    with pytest.raises(OutputExistsError, match="is an existing folder"):
        prepare_output_files([tmp_path / "cards"], overwrite=True)


def test_the_main_job_refuses_a_non_empty_output_dir_unless_overwrite_or_resume(tmp_path, capsys):
    """`python training/train.py` (and `etfuser train`): the folder is checked before any work, as a usage error."""
    from etfuser_hf.training.main import parse_args

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    with pytest.raises(SystemExit) as failure:
        parse_args(["--output-dir", str(run)], prog="training/train.py")
    assert failure.value.code == 2
    error = capsys.readouterr().err
    assert f"training/train.py: error: --output-dir: output folder {run} exists and is not empty" in error
    assert "pass --overwrite (or --resume_from_checkpoint latest, to continue that run)" in error
    assert parse_args(["--output-dir", str(run), "--overwrite"]).overwrite
    assert parse_args(["--output-dir", str(run), "--resume_from_checkpoint", "latest"]).resume_from_checkpoint == "latest"
    assert (run / "metrics.json").read_text() == "{}"  # nothing of the earlier run was touched
    assert parse_args(["--output-dir", str(tmp_path / "new")]).output_dir == tmp_path / "new"
    assert not (tmp_path / "new").exists()  # parsing creates nothing; the job creates the folder when it starts
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit):
        parse_args(["--output-dir", str(tmp_path / "file"), "--overwrite"])
    assert "is an existing file; expected a folder or a new path" in capsys.readouterr().err
