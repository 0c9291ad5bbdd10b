"""The environment is locked: requirements.lock holds every package at one version, pyproject's
pins agree with it, and `make setup` installed exactly it (no more, no less, no other version)."""

import importlib.metadata
import re
import tomllib

from dagster_project.config import PROJECT_ROOT

LOCK = PROJECT_ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            pins[normalise(match.group(1))] = match.group(2)
    return pins


def test_every_locked_package_has_hashes_and_one_version():
    text = LOCK.read_text(encoding="utf-8")
    assert len(locked()) > 100
    assert text.count("--hash=sha256:") >= len(locked())
    for name in ("dagster", "dbt-core", "dbt-duckdb", "duckdb", "pandas", "great-expectations", "pyarrow"):
        assert name in locked(), name


def test_pyproject_pins_agree_with_the_lock():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = project["dependencies"] + [r for extra in ("dev", "spark") for r in project["optional-dependencies"][extra]]
    pins = locked()
    for requirement in requirements:
        match = PIN.match(requirement.replace(" ", ""))
        if match:  # exact pins must be what the lock holds
            assert pins[normalise(match.group(1))] == match.group(2), requirement
        else:  # ranges must at least be locked
            name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0)
            assert normalise(name) in pins, requirement


def test_the_environment_is_exactly_the_lock():
    installed = {
        normalise(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
        # The project itself, and the installer tooling every venv is seeded with.
        if normalise(dist.metadata["Name"]) not in {"loyalty-warehouse", "pip", "setuptools", "wheel"}
    }
    assert installed == locked()
