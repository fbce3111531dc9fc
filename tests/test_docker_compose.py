"""docker-compose.yml's settings make a valid production configuration for every service.

Docker is not on the CI machine, so the file is read here as compose would read it: YAML
anchors merged, `${VAR:-default}` given its default and `${VAR:?message}` (a value the
operator must export) a stand-in secret, then each service's environment is loaded as
Settings in a clean environment. A production setting compose forgets fails here, not in a
stack whose `migrate` never completes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from shared.settings import Settings

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"
VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def _substitute(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if kind == "-":
            return rest
        return f"stand-in-{name.lower()}-0123456789abcdef"  # required: the operator sets it

    return VARIABLE.sub(one, text)


def _services() -> dict[str, dict[str, object]]:
    document = yaml.safe_load(COMPOSE.read_text())
    return {name: spec for name, spec in document["services"].items()
            if "UNCLIP_ENV" in (spec.get("environment") or {})}  # fmt: skip


@pytest.mark.parametrize("service", sorted(_services()))
def test_each_service_environment_is_a_valid_production_configuration(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = _services()[service]["environment"]
    assert isinstance(environment, dict)
    for name in [n for n in list(os.environ) if n.startswith("UNCLIP_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(str(name), _substitute(str(value)))
    settings = Settings()  # raises if production would refuse to start
    assert settings.env == "production" and settings.public_base_url
    assert settings.database_url.startswith("postgresql")


def test_the_api_migrate_sweeper_webhooks_and_workers_are_all_checked() -> None:
    assert {"api", "migrate", "sweeper", "webhooks", "worker-prior", "worker-decoder",
            "worker-upsampler"} <= set(_services())  # fmt: skip
