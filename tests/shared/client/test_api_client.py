"""ApiClient: what is worth another try, and answers that are not what a client expects."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from shared.client.api_client import ApiError, ClientError, encode_image
from tests.shared.client.fake_api import FakeApi


def test_no_answer_and_gateway_errors_are_transient_others_are_not() -> None:
    assert ApiError("cannot reach").transient
    assert all(ApiError("x", status=s).transient for s in (502, 503, 504))
    assert not any(ApiError("x", status=s).transient for s in (200, 400, 401, 404, 409, 500))


def test_a_page_that_is_not_json_is_an_error_with_its_status() -> None:
    api = FakeApi(jobs=[httpx.Response(200, text="<html>proxy login</html>")])
    with pytest.raises(ApiError, match="not a JSON object") as caught:
        api.client().job("j1")
    assert caught.value.status == 200 and not caught.value.transient


def test_an_answer_that_is_not_an_event_stream_is_not_retried() -> None:
    page = httpx.Response(200, text="<html></html>", headers={"content-type": "text/html"})
    api = FakeApi(jobs=[], streams=[page])
    with pytest.raises(ApiError, match="no event stream") as caught:
        list(api.client().events("j1"))
    assert caught.value.status == 200 and not caught.value.transient


def test_a_missing_file_is_a_local_error(tmp_path: Path) -> None:
    with pytest.raises(ClientError) as caught:
        encode_image(tmp_path / "nope.png")
    assert not isinstance(caught.value, ApiError)
    assert str(caught.value) == f"cannot read {tmp_path / 'nope.png'}: No such file or directory"
