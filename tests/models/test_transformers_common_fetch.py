"""How transformers' common tests are fetched for the installed version (transformers_common.py): a version that
cannot be downloaded is a `CommonTestsUnavailable` (the common-test module skips itself with that reason) rather than
an error that stops the suite's collection, and a recorded sha256 is still enforced."""

from __future__ import annotations

import pytest
import transformers_common
from transformers_common import CommonTestsUnavailable, fetch_common_tests


def test_a_version_pip_cannot_download_is_unavailable_not_a_collection_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ETFUSER_CACHE", str(tmp_path))
    with pytest.raises(CommonTestsUnavailable, match=r"transformers 0\.0\.0a0: pip could not download its sdist"):
        fetch_common_tests("0.0.0a0")  # no such release: pip answers at once, with or without a network


def test_a_recorded_sha256_that_does_not_match_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ETFUSER_CACHE", str(tmp_path))
    monkeypatch.setitem(transformers_common.SDIST_SHA256, "9.9.9", "0" * 64)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "transformers-9.9.9.tar.gz").write_bytes(b"not the sdist")
    with pytest.raises(RuntimeError, match=r"transformers-9\.9\.9\.tar\.gz: sha256 [0-9a-f]{64}, expected 0{64}"):
        fetch_common_tests("9.9.9")
