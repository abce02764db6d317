"""Transformers' own common tests (`tests/test_modeling_common.py`, `tests/test_configuration_common.py`) for the
installed transformers version. They are not in the wheel, so they come from that version's sdist, fetched with
`pip download --no-deps --no-binary :all:` like any other package (pip checks the download against the hash the
registry publishes; versions in `SDIST_SHA256` are checked against that recorded sha256 too) into the etfuser_hf cache,
and only those two files are extracted into an importable package there. Any installed version works: a version
not recorded here is fetched the same way, and only when pip cannot get the sdist at all (no network) does
`CommonTestsUnavailable` say why, so the test module skips itself instead of stopping the suite's collection.

The sdist ships the top-level `tests/*.py` only; what the two files import from deeper in the tests tree is stubbed,
each stub saying why it does not matter here:
- `tests/exporters/test_export.py` (`ExportTesterMixin`): the export mixin; ET-Fuser's own `torch.export` / ONNX
  checks are in tests/hub/test_hub_surface.py.
- `tests/generation/test_utils.py` (`GenerationTesterMixin`): generation only; ET-Fuser does not generate.
- `tests/utils/test_configuration_utils.py` (`config_common_kwargs`): read only by `check_config_arguments_init`,
  which returns early for composite configs (those with `sub_configs`), as ETFuserConfig is.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers

# sha256 of sdists fetched and checked here before (an extra check on top of pip's check against the registry)
SDIST_SHA256 = {"5.24.0": "906cb8c3cb2123575e263962586a4d21a979ce97feeb95fe6aaf66fe6ae88bf3"}
PACKAGE = "hf_common_tests"
FILES = ("test_modeling_common.py", "test_configuration_common.py")
STUBS = {
    "exporters/test_export.py": "class ExportTesterMixin:\n    \"\"\"Stub: the sdist does not ship tests/exporters.\"\"\"\n",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    \"\"\"Stub: the sdist does not ship tests/generation.\"\"\"\n",
    "utils/test_configuration_utils.py": "# Stub: the sdist does not ship tests/utils; composite configs skip its use.\n"
                                         "config_common_kwargs = {}\n",
}


def _cache_root() -> Path:
    return Path(os.environ.get("ETFUSER_CACHE") or Path.home() / ".cache" / "etfuser_hf").expanduser()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class CommonTestsUnavailable(RuntimeError):
    """pip could not download the sdist of the installed transformers version (no network, no such file)."""


def _download_sdist(version: str, downloads: Path) -> Path:
    sdist = downloads / f"transformers-{version}.tar.gz"
    if sdist.is_file():
        return sdist
    with tempfile.TemporaryDirectory(dir=downloads) as staging:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                   "--disable-pip-version-check", "--dest", staging, f"transformers=={version}"]
        result = subprocess.run(command, capture_output=True, text=True)
        downloaded = Path(staging) / sdist.name
        if result.returncode != 0 or not downloaded.is_file():
            tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
            raise CommonTestsUnavailable(f"transformers {version}: pip could not download its sdist ({tail})")
        os.replace(downloaded, sdist)
    return sdist


def fetch_common_tests(version: str = transformers.__version__) -> Path:
    """Returns the folder holding the importable `hf_common_tests` package for `version` (fetched once)."""
    root = _cache_root() / "transformers-tests" / version
    if all((root / PACKAGE / file).is_file() for file in FILES):
        return root
    downloads = _cache_root() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    sdist = _download_sdist(version, downloads)
    recorded = SDIST_SHA256.get(version)
    if recorded is not None and _sha256(sdist) != recorded:
        raise RuntimeError(f"{sdist}: sha256 {_sha256(sdist)}, expected {recorded}; delete it to fetch again.")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract.", dir=root.parent))
    package = staging / PACKAGE
    for stub, text in STUBS.items():
        (package / stub).parent.mkdir(parents=True, exist_ok=True)
        (package / stub).write_text(text)
        (package / stub).parent.joinpath("__init__.py").touch()
    (package / "__init__.py").touch()
    with tarfile.open(sdist) as bundle:
        for file in FILES:
            reader = bundle.extractfile(f"transformers-{version}/tests/{file}")
            (package / file).write_bytes(reader.read())
    try:
        os.rename(staging, root)
    except OSError:  # a concurrent run finished first
        pass
    return root


def import_common_tests():
    """(test_modeling_common, test_configuration_common) of the installed transformers version."""
    root = str(fetch_common_tests())
    if root not in sys.path:
        sys.path.insert(0, root)
    return (importlib.import_module(f"{PACKAGE}.test_modeling_common"),
            importlib.import_module(f"{PACKAGE}.test_configuration_common"))
