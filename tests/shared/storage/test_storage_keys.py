"""Storage keys carry the job id and attempt, and refuse parts that could change the path."""

from __future__ import annotations

import pytest

from shared.errors import InvalidStorageKey
from shared.storage.keys import image_key, input_key, stage_output_key


def test_layout() -> None:
    assert input_key("j1", "image.png") == "jobs/j1/inputs/image.png"
    assert stage_output_key("j1", 2, "prior", "emb.safetensors") == (
        "jobs/j1/attempt-2/prior/emb.safetensors"
    )
    assert image_key("j1", 3, 0) == "jobs/j1/attempt-3/images/0.png"
    assert image_key("j1", 3, 0) != image_key("j1", 4, 0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: input_key("../j", "x"),
        lambda: input_key("j", "a/b"),
        lambda: input_key("j", ".."),
        lambda: stage_output_key("j", -1, "prior", "x"),
        lambda: stage_output_key("j", 1, "pr/ior", "x"),
        lambda: image_key("j", 1, -1),
    ],
)
def test_bad_parts_are_refused(call: object) -> None:
    with pytest.raises(InvalidStorageKey):
        call()  # type: ignore[operator]
