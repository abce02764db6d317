"""The sha256 manifest of every converted prior folder: written last, verified by `ensure_face_priors`, damaged or
partial folders rebuilt from the pinned archive (or refused), folders from before manifests adopted after a check.
Runs on the real "expression" prior (the FER mini-Xception) in a temporary cache."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from etfuser_hf.priors.convert_face_priors import MANIFEST, PRIOR_FILES, ensure_face_priors, verify_prior_folder
from etfuser_hf.priors.fetch import SOURCES, ChecksumError, default_cache_dir, fetch_archive


@pytest.fixture
def cache(tmp_path) -> Path:
    """A temporary cache holding only the verified fer archive (fetched into the default cache once)."""
    archive = fetch_archive("fer", default_cache_dir() / "downloads")
    target = tmp_path / "cache" / "downloads" / SOURCES["fer"].filename
    target.parent.mkdir(parents=True)
    shutil.copyfile(archive, target)
    return tmp_path / "cache"


def digests(folder: Path) -> dict[str, str]:
    return dict(reversed(line.split("  ")) for line in (folder / MANIFEST).read_text().splitlines())


def test_fresh_folder_has_a_manifest_written_last_that_sha256sum_accepts(cache):
    folder = ensure_face_priors(cache, names=["expression"])["expression"]
    assert set(digests(folder)) == set(PRIOR_FILES)
    stamps = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    assert stamps[MANIFEST] == max(stamps.values())
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--check", "--quiet", MANIFEST], cwd=folder, check=True)
    verify_prior_folder(folder)


def _damage(folder: Path) -> None:
    weights = folder / "model.safetensors"
    payload = bytearray(weights.read_bytes())
    payload[-10] ^= 0xFF
    weights.write_bytes(bytes(payload))


def test_a_damaged_file_is_rebuilt_from_the_archive(cache, caplog):
    folder = ensure_face_priors(cache, names=["expression"])["expression"]
    good = digests(folder)
    _damage(folder)
    with caplog.at_level(logging.WARNING, logger="etfuser_hf.priors.convert_face_priors"):
        assert ensure_face_priors(cache, names=["expression"])["expression"] == folder
    assert "model.safetensors: sha256 mismatch" in caplog.text and "Rebuilding it from the pinned archive" in caplog.text
    assert digests(folder) == good
    verify_prior_folder(folder)
    assert sorted(path.name for path in folder.parent.iterdir()) == ["expression"]  # no staging left behind


def test_a_damaged_file_is_refused_with_sha256_and_the_path_without_repair(cache):
    folder = ensure_face_priors(cache, names=["expression"])["expression"]
    _damage(folder)
    with pytest.raises(ChecksumError, match=rf"{folder}.*model\.safetensors: sha256 mismatch.*Delete {folder}"):
        ensure_face_priors(cache, names=["expression"], repair=False)


@pytest.mark.parametrize("missing", ["model.safetensors", MANIFEST])
def test_a_partial_folder_is_rebuilt_or_refused(cache, missing):
    folder = ensure_face_priors(cache, names=["expression"])["expression"]
    good = digests(folder)
    (folder / missing).unlink()
    if missing == MANIFEST:  # complete files without a manifest: the legacy path, damage them so they differ
        _damage(folder)
    with pytest.raises(ChecksumError) as error:
        ensure_face_priors(cache, names=["expression"], repair=False)
    assert "sha256" in str(error.value) and str(folder) in str(error.value)
    ensure_face_priors(cache, names=["expression"])
    assert digests(folder) == good


def test_a_folder_from_before_manifests_is_adopted_untouched(cache):
    folder = ensure_face_priors(cache, names=["expression"])["expression"]
    (folder / MANIFEST).unlink()
    stamps = {file: os.stat(folder / file).st_mtime_ns for file in PRIOR_FILES}
    ensure_face_priors(cache, names=["expression"], repair=False)
    verify_prior_folder(folder)
    assert stamps == {file: os.stat(folder / file).st_mtime_ns for file in PRIOR_FILES}
