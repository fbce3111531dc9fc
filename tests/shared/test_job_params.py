"""The one job-parameter definition: the request schemas, the row, the public object and the
worker's spec agree with it, and the family fills only what the client left out."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from pydantic import ValidationError
from sqlalchemy import Integer, String

from shared.db.models import Job
from shared.job_params import (
    FAMILY_FILLED_COLUMNS,
    KINDS,
    MAX_SEED,
    PARAM_COLUMNS,
    SAMPLERS,
    SIZES,
    JobParams,
    SamplingDefaults,
    Steps,
    fill_params,
    native_as_size,
)

DEFAULTS = SamplingDefaults(
    steps=Steps(prior=10, decoder=10, upsampler=4), sampler="ddim",
    prior_guidance=4.0, decoder_guidance=5.0,
)  # fmt: skip


def test_the_row_has_exactly_the_parameter_columns() -> None:
    columns = Job.__table__.columns
    assert set(PARAM_COLUMNS) <= set(columns.keys())
    assert len(PARAM_COLUMNS) == 11
    # What the family fills is nullable; the rest (kind, prompt, n, seed) never is.
    for name in PARAM_COLUMNS:
        assert columns[name].nullable == (name in FAMILY_FILLED_COLUMNS), name
    longest = max(len(v) for v in (*KINDS, *SAMPLERS, *SIZES))
    for name in ("kind", "size", "sampler"):
        assert isinstance(columns[name].type, String) and columns[name].type.length >= longest
    assert isinstance(columns["n"].type, Integer)


def test_row_values_cover_the_columns_and_round_trip() -> None:
    asked = JobParams(kind="edit", prompt="p", n=3, size="128x128", seed=MAX_SEED,
                      sampler="ddpm", steps={"decoder": 5}, prior_guidance=0.0)  # fmt: skip
    values = asked.row_values()
    assert set(values) == set(PARAM_COLUMNS)
    assert values["steps_decoder"] == 5 and values["steps_prior"] is None


def test_request_schemas_derive_from_the_one_definition() -> None:
    from api.schemas.images import ImageGenerate
    from api.schemas.jobs import (
        DELIVERY_FIELDS,
        EMBEDDING_FIELDS,
        JobCreate,
        JobPublic,
        job_create_form_schema,
    )

    extras = {"image", "mask"} | DELIVERY_FIELDS | EMBEDDING_FIELDS
    assert set(JobCreate.model_fields) == set(JobParams.model_fields) | extras
    public = set(JobPublic.model_fields)
    assert set(JobParams.model_fields) <= public
    assert {"params_used", "native_size", "resized"} <= public
    form = job_create_form_schema()["properties"]
    assert {"steps_prior", "steps_decoder", "steps_upsampler"} <= set(form)
    assert "steps" not in form
    # The OpenAI request's size is the same Literal.
    size = ImageGenerate.model_fields["size"].annotation
    assert set(SIZES) <= set(_literal_values(size))


def _literal_values(annotation: object) -> set[object]:
    found: set[object] = set()
    for arg in typing.get_args(annotation):
        found |= set(typing.get_args(arg)) if typing.get_origin(arg) is typing.Literal else set()
    if typing.get_origin(annotation) is typing.Literal:
        found |= set(typing.get_args(annotation))
    return found


def test_worker_spec_has_a_field_for_every_parameter() -> None:
    from worker.unclip.render_spec import RenderSpec, StageSteps

    spec_fields = {f.name for f in dataclasses.fields(RenderSpec)}
    asked = set(JobParams.model_fields) - {"size"}  # size is applied after the upsampler
    assert asked <= spec_fields
    assert {f.name for f in dataclasses.fields(StageSteps)} == set(Steps.model_fields)


def test_the_family_fills_only_the_nones() -> None:
    used = fill_params(JobParams(seed=1, steps={"prior": 3}, decoder_guidance=1.0),
                       family="f", native_size="64x64", defaults=DEFAULTS)  # fmt: skip
    assert used.steps.model_dump() == {"prior": 3, "decoder": 10, "upsampler": 4}
    assert (used.prior_guidance, used.decoder_guidance, used.sampler) == (4.0, 1.0, "ddim")
    assert used.size == "64x64" and not used.resized
    bigger = fill_params(JobParams(seed=1, size="1024x1024"), family="f", native_size="64x64",
                         defaults=DEFAULTS)  # fmt: skip
    assert bigger.resized


def test_a_job_runs_with_a_seed() -> None:
    with pytest.raises(ValueError, match="seed"):
        fill_params(JobParams(), family="f", native_size="64x64", defaults=DEFAULTS)
    with pytest.raises(ValueError, match="seed"):
        JobParams().row_values()


def test_native_size_outside_the_job_sizes_maps_to_the_next_larger() -> None:
    assert native_as_size("64x64") == "64x64"
    assert native_as_size("96x96") == "128x128"
    assert native_as_size("4096x4096") == "1024x1024"


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"kind": "inpaint"}, "kind"),
        ({"size": "300x300"}, "size"),
        ({"seed": MAX_SEED + 1}, "seed"),
        ({"steps": {"prior": 0}}, "steps.prior"),
        ({"prior_guidance": float("nan")}, "prior_guidance"),
        ({"n": 11}, "n"),
        ({"model": "dall-e-2"}, "model"),
    ],
)
def test_the_schema_refuses_what_no_deployment_allows(
    fields: dict[str, object], where: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        JobParams.model_validate(fields)
    assert ".".join(str(p) for p in caught.value.errors()[0]["loc"]) == where


def test_the_model_library_knows_the_same_kinds_and_samplers() -> None:
    # worker/unclip is a library that imports nothing of the service; these must still agree.
    from worker.unclip.diffusion.samplers import SAMPLER_NAMES
    from worker.unclip.render_spec import KINDS as LIBRARY_KINDS

    assert set(KINDS) <= set(LIBRARY_KINDS)  # the library may render more than jobs ask
    assert set(SAMPLER_NAMES) == set(SAMPLERS)
