"""``.env.example`` lists every environment variable the platform reads, and no secret values.

The variables are found in the code itself: the ``*_ENV`` name constants (lib/core/settings.py and the
partition module), literal ``os.environ`` / ``os.getenv`` / ``dg.EnvVar`` reads anywhere in the
package, and the ``{env: ...}`` fields of deploy/dagster.yaml.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "aed_pipeline"
NAME = r"([A-Z][A-Z0-9_]*)"
NAME_CONSTANT = re.compile(rf"^\s*[A-Z0-9_]+_ENV\s*=\s*[\"']{NAME}[\"']", re.MULTILINE)
LITERAL_READ = re.compile(rf"(?:os\.environ\.get|os\.getenv|os\.environ\[|EnvVar)\(?\s*[\"']{NAME}[\"']")
SECRET = re.compile(r"KEY|PASSWORD|WEBHOOK|DATABASE_URL|TOKEN|SECRET")
# Read by Dagster itself rather than by the package: where the instance's dagster.yaml lives.
DAGSTER_OWN = {"DAGSTER_HOME"}


def variables_in_code() -> set[str]:
    names: set[str] = set()
    for source in PACKAGE.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        names |= set(NAME_CONSTANT.findall(text)) | set(LITERAL_READ.findall(text))
    return names


def variables_in_instance_config() -> set[str]:
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if set(node) == {"env"}:
                found.add(node["env"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text()))
    return found


def env_example() -> dict[str, tuple[str, list[str]]]:
    """Each variable of .env.example with its value and the comment lines just above it."""
    entries: dict[str, tuple[str, list[str]]] = {}
    comments: list[str] = []
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            comments.append(line)
        elif "=" in line:
            name, value = line.split("=", 1)
            assert name not in entries, f"{name} is listed twice"
            entries[name] = (value, comments)
            comments = []
        else:
            comments = []
    return entries


def test_the_scan_finds_the_variables_the_settings_module_defines() -> None:
    from aed_pipeline.lib.core import settings

    defined = {value for name, value in vars(settings).items() if name.endswith("_ENV")}
    assert defined and defined <= variables_in_code()
    assert {"DAGSTER_PG_HOST", "DAGSTER_PG_PASSWORD"} <= variables_in_instance_config()


def test_every_variable_the_platform_reads_is_in_env_example() -> None:
    needed = variables_in_code() | variables_in_instance_config() | DAGSTER_OWN
    missing = needed - set(env_example())
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_env_example_lists_no_variable_nothing_reads() -> None:
    read = variables_in_code() | variables_in_instance_config() | DAGSTER_OWN
    stale = set(env_example()) - read
    assert not stale, f"nothing reads {sorted(stale)}"


def test_secrets_are_empty_and_every_variable_is_explained() -> None:
    entries = env_example()
    secrets = {name for name in entries if SECRET.search(name)}
    assert {"EGEN_SERVICE_KEY", "AT_FLOWER_SERVICE_KEY", "AED_PIPELINE_DATABASE_URL", "DAGSTER_PG_PASSWORD"} <= secrets
    for name, (value, comments) in entries.items():
        if name in secrets:
            assert value == "", f"{name} must be empty in .env.example"
            assert any("(secret)" in line for line in comments), f"{name} is not marked as a secret"
        # Consecutive DAGSTER_PG_* lines share the comment above the first of them.
        assert comments or name.startswith("DAGSTER_PG_"), f"{name} has no comment"
