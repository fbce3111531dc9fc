"""Stage payloads round-trip exactly and refuse what is not theirs."""

from __future__ import annotations

import pytest
import torch

from worker.tasks.payloads import decode_tensor, encode_tensor


def test_round_trip_is_exact_and_float32() -> None:
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(0)).to(torch.float16)
    y = decode_tensor(encode_tensor(x, stage="prior"), stage="prior", expected_rows=3)
    assert y.dtype == torch.float32
    assert torch.equal(y, x.to(torch.float32))


def test_wrong_row_count_is_refused() -> None:
    blob = encode_tensor(torch.zeros(2, 3, 4, 4), stage="decoder")
    with pytest.raises(ValueError, match="has 2 rows; the job asks for 3"):
        decode_tensor(blob, stage="decoder", expected_rows=3)


def test_garbage_is_refused() -> None:
    with pytest.raises(ValueError, match="not a safetensors payload"):
        decode_tensor(b"\x89PNG not a tensor", stage="prior")
