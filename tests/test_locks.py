"""The two lock files: requirements-dev.lock is what CI installs and tests; requirements.lock is what
the Docker image installs. They must be the same pins, the image's without the test tools."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path
from course.settings import PROJECT_ROOT


PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;]+)")


def _name(requirement: str) -> str:
    """PEP 503 normalised project name of a requirement string ("psycopg[binary]>=3.2" -> "psycopg")."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]).lower()


def _pins(lock: str) -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / lock).read_text().splitlines():
        if match := PIN.match(line):
            pins[_name(match[1])] = match[2]
    return pins


def _project() -> dict:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]


def test_the_image_lock_is_the_dev_lock_without_the_test_tools() -> None:
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert runtime, "requirements.lock pins nothing"
    different = {name: (version, dev.get(name)) for name, version in runtime.items() if dev.get(name) != version}
    assert not different, f"pinned differently from requirements-dev.lock: {different}"
    test_tools = {_name(requirement) for requirement in _project()["optional-dependencies"]["dev"]}
    assert not test_tools & runtime.keys(), f"test tools in the image's lock: {sorted(test_tools & runtime.keys())}"
    assert test_tools <= dev.keys()


def test_every_dependency_is_pinned_in_both_locks() -> None:
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    for requirement in _project()["dependencies"]:
        assert _name(requirement) in runtime, f"{requirement} is not pinned in requirements.lock"
        assert _name(requirement) in dev, f"{requirement} is not pinned in requirements-dev.lock"


def test_this_environment_runs_the_pinned_versions() -> None:
    """What the tests run on is what the lock says, so a fresh machine installs what CI tested."""
    installed = {_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}
    wrong = {name: (pinned, installed.get(name)) for name, pinned in _pins("requirements-dev.lock").items()
             if installed.get(name) != pinned}
    assert not wrong, f"installed versions differ from requirements-dev.lock (pinned, installed): {wrong}"
