"""schemathesis against the app itself: no input it generates gets a 5xx, and every answer
matches the OpenAPI document (status, content type, headers, schema), with all checks on."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from shared.storage.local import LocalStorage

from .conftest import RecordingQueue
from .keys_support import bearer, keyed_settings, new_key

MAX_EXAMPLES = 8  # per operation and mode; the whole run stays under a minute on 2 cores
# positive_data_acceptance is left out, narrowly: a body the schema allows can still be
# refused by rules a JSON schema cannot state (kind=edit needs an image, `image` must be base64
# of a real PNG/JPEG/WebP, n and steps within the deployment's narrower settings, a job id
# must exist), and the API answers those with a documented 4xx in the error shape.
EXCLUDED = [positive_data_acceptance]
load_all_checks()
ALL_CHECKS = [check for check in CHECKS.get_all() if check not in EXCLUDED]
CALLS: list[int] = []


def _schema(tmp_path: Path) -> tuple[schemathesis.BaseSchema, dict[str, str]]:
    """The app's schema, and an admin key's header so admin routes are reached too."""
    settings = keyed_settings(tmp_path / "var")
    admin = bearer(new_key(settings, "fuzzer", is_admin=True))
    app = create_app(settings, storage=LocalStorage(tmp_path / "storage"), queue=RecordingQueue())
    return schemathesis.openapi.from_asgi("/openapi.json", app), admin


def test_api_answers_no_5xx_and_matches_its_schema(tmp_path: Path) -> None:
    # schemathesis' own pytest plugin (schema.parametrize / from_fixture) breaks on pytest 9.2
    # ('Function' object has no attribute '_nodeid'), so its strategies drive Hypothesis here.
    schema, admin = _schema(tmp_path)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 10
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            # The sync image routes wait for a worker, and none runs here: past
            # sync_timeout_s they answer the 504 the issue asks for. Ask them to answer at once.
            fixed = dict(admin)
            if operation.path.startswith("/v1/images"):
                fixed["Prefer"] = "respond-async"

            @given(case=operation.as_strategy(generation_mode=mode, headers=fixed))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def check(case: schemathesis.Case) -> None:
                CALLS.append(case.call_and_validate(checks=ALL_CHECKS).status_code)

            try:
                check()
            except Unsatisfiable:
                # Nothing to make invalid (no parameters, no body): no negative case exists.
                assert mode is GenerationMode.NEGATIVE, operation.label
    # Every operation was sent requests (no silent skip), and some were accepted.
    assert len(CALLS) >= len(operations) * MAX_EXAMPLES // 2 and 202 in CALLS, CALLS
