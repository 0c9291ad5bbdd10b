"""No setting is written twice: outside dagster_project/config.py, no file of the warehouse (code,
SQL, YAML, JSON; the tests and the docs aside) gives a setting's value under its name, and the
Great Expectations suites hold no value that is a setting (they take those as parameters)."""

import dataclasses
import json
import re
import subprocess

import yaml

from dagster_project.config import PROJECT_ROOT, LoyaltyConfig

CHECKED_SUFFIXES = (".py", ".sql", ".yml", ".yaml", ".json", ".j2", ".toml")
# Tests pin the values they test (dbt unit tests too); docs describe the defaults.
EXEMPT = re.compile(r"^(tests/|docs/|benchmarks/results/|dagster_project/config\.py$|.*_unit_tests\.yml$|.*\.md$|requirements\.lock$)")


def checked_files():
    listed = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [PROJECT_ROOT / name for name in listed if name.endswith(CHECKED_SUFFIXES) and not EXEMPT.match(name)]


def text_of(file) -> str:
    """The file's text; a dbt YAML file without its unit_tests (they pin the values they test)."""
    text = file.read_text(encoding="utf-8", errors="replace")
    if file.suffix in (".yml", ".yaml") and "unit_tests:" in text:
        data = yaml.safe_load(text) or {}
        data.pop("unit_tests", None)
        text = yaml.safe_dump(data)
    return text


def settings() -> dict:
    return {field.name: getattr(LoyaltyConfig(), field.name) for field in dataclasses.fields(LoyaltyConfig)}


def test_no_file_but_config_gives_a_setting_its_value():
    found = []
    for file in checked_files():
        text = text_of(file)
        for name, value in settings().items():
            values = value.items() if isinstance(value, dict) else [(name, value)]
            for key, item in values:
                if item is None or isinstance(item, (tuple, dict)):
                    continue
                literal = str(item).lower() if isinstance(item, bool) else str(item)
                pattern = rf"\b{re.escape(key)}\b['\"]?\s*[:=]\s*['\"]?{re.escape(literal)}(?![\w.])"
                for match in re.finditer(pattern, text):
                    found.append(f"{file.relative_to(PROJECT_ROOT)}: {match.group(0)}")
    assert found == []


def test_the_suites_hold_no_setting():
    values = set()
    for value in settings().values():
        for item in (value.values() if isinstance(value, dict) else [value]):
            if isinstance(item, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", item):
                values |= {item, f"{item}T00:00:00"}
            elif isinstance(item, float) and 0 < item < 1:
                values.add(item)
    for file in sorted((PROJECT_ROOT / "expectations").glob("*.json")):
        for expectation in json.loads(file.read_text(encoding="utf-8"))["expectations"]:
            for key, value in expectation["kwargs"].items():
                assert not (isinstance(value, (str, float)) and value in values), (file.name, key, value)
