"""requirements/lock.txt, the tested set that the README's commands and .ci/run install through, against setup.py's
ranges: every pin lies inside the range that library users get, every requirement of the package (with its `test`
and `benchmarks` extras) is pinned, and torch is pinned as a public release that installs here and elsewhere."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK = REPO_ROOT / "requirements" / "lock.txt"
LOCKED_EXTRAS = ("test", "benchmarks")


def setup_requirements() -> dict[str, list[Requirement]]:
    """setup.py's `install_requires` (under "") and `extras_require`, read from its source without running it."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    call = next(node for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup")
    keywords = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords
                if keyword.arg in ("install_requires", "extras_require")}
    groups = {"": keywords["install_requires"], **keywords["extras_require"]}
    return {group: [Requirement(line) for line in lines] for group, lines in groups.items()}


def lock_pins(text: str) -> dict[str, Version]:
    """name -> pinned version of every `name==version` line of a pip-compile output (comments and options ignored)."""
    pins = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
        if match is None:
            raise ValueError(f"{LOCK}:{number}: expected 'name==version', got {line!r}")
        pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


@pytest.fixture(scope="module")
def pins() -> dict[str, Version]:
    return lock_pins(LOCK.read_text())


def test_lock_pins_satisfy_setup_ranges(pins):
    outside = [f"{requirement} (locked {pins[canonicalize_name(requirement.name)]})"
               for requirements in setup_requirements().values() for requirement in requirements
               if canonicalize_name(requirement.name) in pins
               and not requirement.specifier.contains(pins[canonicalize_name(requirement.name)], prereleases=True)]
    assert not outside, f"pins outside setup.py's ranges: {outside}"


def test_lock_covers_the_package_and_its_locked_extras(pins):
    groups = setup_requirements()
    wanted = [requirement for group in ("", *LOCKED_EXTRAS) for requirement in groups[group]]
    missing = [str(requirement) for requirement in wanted if canonicalize_name(requirement.name) not in pins]
    assert not missing, f"not in {LOCK.name} (run scripts/refresh-lock): {missing}"


def test_lock_pins_public_torch_and_no_cuda_build(pins):
    # A local label (+cpu) exists only on this machine's disk; == without one installs the registry's build elsewhere
    assert pins["torch"] == Version("2.13.0") and pins["torch"].local is None
    assert not [name for name in pins if name.startswith("nvidia-") or name == "triton"]


def test_lock_parser_names_the_bad_line():
    with pytest.raises(ValueError, match=r"lock.txt:2: expected 'name==version', got 'numpy>=2'"):
        lock_pins("torch==2.13.0\nnumpy>=2\n")


def test_readme_commands_and_ci_install_through_the_lock():
    readme = (REPO_ROOT / "README.md").read_text()
    setup_section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", setup_section, flags=re.S)
    assert len(commands) == 2, commands  # the main job and the test suite, nothing else
    assert all(command.startswith("pip install ") and "-c requirements/lock.txt" in command for command in commands)
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci_lines, ".ci/run must run the README's test command as written"
