"""The scripts in tests/priors/fixtures/generate/ write the fixtures the prior tests read: their output paths are the
fixtures' folders (read from the scripts' own constants; neither Keras nor node is run)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from conftest import REPO_ROOT

GENERATE = REPO_ROOT / "tests" / "priors" / "fixtures" / "generate"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, GENERATE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_faceapi_inputs_are_written_where_the_tests_read_them():
    module = load_script("faceapi_inputs")
    assert module.FIXTURES == REPO_ROOT / "tests" / "priors" / "fixtures" / "faceapi"
    for size in module.SIZES:
        assert (module.FIXTURES / f"inputs_{size}.npy").is_file()
    assert module.CROPS == module.FIXTURES / "crops.npz" and module.CROPS.is_file()


def test_fer_reference_is_written_where_the_tests_read_it():
    assert load_script("fer_reference").FIXTURE == REPO_ROOT / "tests" / "priors" / "fixtures" / "fer" / "reference.npz"
    assert load_script("fer_reference").FIXTURE.is_file()
    assert load_script("fer_reference").CROPS == REPO_ROOT / "tests" / "priors" / "fixtures" / "fer" / "crops.npz"
    assert load_script("fer_reference").CROPS.is_file()


def test_faceapi_reference_script_reads_and_writes_the_faceapi_fixtures():
    source = (GENERATE / "faceapi_reference.mjs").read_text()
    (arguments,) = re.findall(r"^const fixtures = join\(here, (.*?)\);", source, flags=re.MULTILINE)
    fixtures = Path(GENERATE, *re.findall(r"'([^']*)'", arguments)).resolve()
    assert fixtures == REPO_ROOT / "tests" / "priors" / "fixtures" / "faceapi"
    assert "join(fixtures, 'reference.json')" in source and (fixtures / "reference.json").is_file()
    assert "join(fixtures, `inputs_${size}.npy`)" in source
    assert all((fixtures / f"inputs_{size}.npy").is_file() for size in load_script("faceapi_inputs").SIZES)
