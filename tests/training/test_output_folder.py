"""prepare_output_dir / prepare_output_files: an earlier run is never silently overwritten."""

from __future__ import annotations

import pytest

from etfuser_hf.training.output_folder import OutputExistsError, prepare_output_dir, prepare_output_files


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
