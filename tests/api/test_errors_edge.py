"""The edge: one error shape for every 4xx/5xx, request ids, and no 5xx for client input.

Each former 5xx of issue 14 has a test here: JSON nested 1000 deep, a huge image index, and
NUL in a prompt, a job id or a cursor, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from shared.settings import Settings
from shared.storage.local import LocalStorage

from .conftest import RecordingQueue
from .keys_support import serve

SHAPE = {"message", "type", "param", "code"}
DEEP = "[" * 1000 + "]" * 1000


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error object of a response, checking its status, shape and request id."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == SHAPE, body
    expected = "invalid_request_error" if status < 500 else "server_error"
    assert body["error"]["type"] == expected
    return dict(body["error"])


def _failing_app(settings: Settings, tmp_path: Path) -> FastAPI:
    app = create_app(settings, storage=LocalStorage(tmp_path / "s"), queue=RecordingQueue())

    @app.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    return app


@pytest.fixture
def pg_client(postgres_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, database_url=postgres_url)
    app = create_app(settings, storage=LocalStorage(tmp_path / "storage"), queue=RecordingQueue())
    with TestClient(app) as client:
        yield client


@pytest.fixture(params=["sqlite", "postgres"])
def any_client(request: pytest.FixtureRequest) -> TestClient:
    name = "client" if request.param == "sqlite" else "pg_client"
    if request.param == "postgres":
        request.applymarker(pytest.mark.integration)
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def test_unknown_route_and_wrong_method_are_the_error_shape(client: TestClient) -> None:
    assert error_of(client.get("/v1/nowhere"), 404)["code"] == "not_found"
    wrong = client.delete("/v1/jobs")
    allow = wrong.headers["allow"]
    assert allow and f"allowed: {allow}" in error_of(wrong, 405)["message"]
    # Every method served at the path, not only the first route's.
    assert set(allow.split(", ")) == {"GET", "POST"}
    patch = client.patch("/v1/jobs/some-id")
    assert set(patch.headers["allow"].split(", ")) == {"GET", "DELETE"}


def test_validation_is_400_not_422(client: TestClient) -> None:
    error = error_of(client.get("/v1/jobs", params={"limit": 0}), 400)
    assert error["param"] == "limit" and "0" in error["message"]


def test_request_id_is_echoed_when_sane_and_made_otherwise(client: TestClient) -> None:
    echoed = client.get("/healthz", headers={"x-request-id": "abc-123.x"})
    assert echoed.headers["x-request-id"] == "abc-123.x"
    made = client.get("/healthz", headers={"x-request-id": "bad id\twith spaces"})
    assert made.headers["x-request-id"].startswith("req_")
    other = client.get("/healthz").headers["x-request-id"]
    assert other != made.headers["x-request-id"]


def test_unexpected_exception_is_a_json_500_logged_with_the_request_id(
    api_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(_failing_app(api_settings, tmp_path)) as client:
        response = client.get("/v1/boom", headers={"x-request-id": "trace-77"})
    error = error_of(response, 500)
    assert "trace-77" in error["message"] and "secret internals" not in error["message"]
    assert any("trace-77" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_500_keeps_the_connection(api_settings: Settings, tmp_path: Path) -> None:
    with serve(_failing_app(api_settings, tmp_path)) as base:
        address = urlsplit(base)
        request = "GET {} HTTP/1.1\r\nHost: test\r\n\r\n"
        with socket.create_connection((address.hostname, address.port), timeout=20) as conn:
            answers = []
            for path in ("/v1/boom", "/healthz"):  # the second on the same connection
                conn.sendall(request.format(path).encode())
                answers.append(_read_answer(conn))
    assert answers[0].startswith(b"HTTP/1.1 500") and b'"server_error"' in answers[0]
    assert answers[1].startswith(b"HTTP/1.1 200")


def _read_answer(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return head + b"\r\n\r\n" + body


def test_body_over_the_cap_is_413_in_the_shape(client: TestClient, queue: RecordingQueue) -> None:
    declared = client.post(
        "/v1/jobs", content=b"{}",
        headers={"content-type": "application/json", "content-length": str(10**9)},
    )  # fmt: skip
    assert error_of(declared, 413)["param"] == "body"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"prompt": "'
        for _ in range(13):
            yield b"x" * (1024 * 1024)

    headers = {"content-type": "application/json"}
    streamed = client.post("/v1/jobs", content=chunks(), headers=headers)
    assert error_of(streamed, 413)["param"] == "body"
    assert queue.sent == []

    boundary = "xyz"

    def multipart() -> Iterator[bytes]:  # the same on an OpenAI endpoint's form parsing
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
               'filename="a.png"\r\nContent-Type: image/png\r\n\r\n').encode()  # fmt: skip
        for _ in range(13):
            yield b"x" * (1024 * 1024)

    form = {"content-type": f"multipart/form-data; boundary={boundary}"}
    upload = client.post("/v1/images/variations", content=multipart(), headers=form)
    assert error_of(upload, 413)["code"] == "payload_too_large"
    broken = client.post("/v1/images/variations", content=b"--nope",
                         headers={"content-type": "multipart/form-data"})  # fmt: skip
    error = error_of(broken, 400)
    assert (error["param"], error["code"]) == ("body", "invalid_value")
    assert queue.sent == []


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/images/generations", "/v1/jobs/some-id/cancel"])
def test_json_nested_1000_deep_is_400(client: TestClient, path: str) -> None:
    response = client.post(path, content=DEEP, headers={"content-type": "application/json"})
    error = error_of(response, 400)
    assert error["param"] == "body" and "32" in error["message"]


def test_json_nested_just_too_deep_names_the_place(client: TestClient) -> None:
    nested: Any = 1
    for _ in range(32):
        nested = [nested]
    body = {"prompt": "p", "steps": {"prior": nested}}  # 34 levels in all
    error = error_of(client.post("/v1/jobs", json=body), 400)
    assert "steps.prior" in error["message"]


def test_huge_image_index_is_4xx(any_client: TestClient) -> None:
    job_id = any_client.post("/v1/jobs", json={"prompt": "p"}).json()["id"]
    for index in (2**31, 2**31 - 1, 9223372036854775808, 10**30):
        response = any_client.get(f"/v1/jobs/{job_id}/images/{index}")
        assert 400 <= response.status_code < 500, (index, response.text)
        error_of(response, response.status_code)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"prompt": "a red\x00 circle"}, "prompt"),
        ({"prompt": "bell \x07"}, "prompt"),
        ({"prompt": "p", "\x00": 1}, "(key)"),
    ],
)
def test_unstorable_characters_in_the_body_are_400(
    any_client: TestClient, payload: dict[str, Any], param: str
) -> None:
    error = error_of(any_client.post("/v1/jobs", json=payload), 400)
    assert error["param"] == param and "U+00" in error["message"]


def test_lone_surrogate_in_the_prompt_is_400(any_client: TestClient) -> None:
    raw = b'{"prompt": "half a pair \\ud800"}'
    headers = {"content-type": "application/json"}
    error = error_of(any_client.post("/v1/jobs", content=raw, headers=headers), 400)
    assert error["param"] == "prompt" and "U+D800" in error["message"]


def test_nul_in_a_multipart_prompt_is_400(any_client: TestClient) -> None:
    response = any_client.post("/v1/jobs", data={"prompt": "x\x00y"}, files={"n": (None, "1")})
    assert error_of(response, 400)["param"] == "prompt"


def test_nul_in_the_openai_prompt_is_400(any_client: TestClient) -> None:
    response = any_client.post("/v1/images/generations", json={"prompt": "x\x00y"})
    assert error_of(response, 400)["param"] == "prompt"


def test_nul_in_a_job_id_or_cursor_is_400(any_client: TestClient) -> None:
    assert error_of(any_client.get("/v1/jobs/abc%00def"), 400)["param"] == "job_id"
    assert error_of(any_client.post("/v1/jobs/abc%00/cancel"), 400)["param"] == "job_id"
    assert error_of(any_client.get("/v1/jobs/a%00/images/0"), 400)["param"] == "job_id"
    listed = any_client.get("/v1/jobs", params={"cursor": "abc\x00"})
    assert error_of(listed, 400)["param"] == "cursor"


def test_a_well_formed_cursor_hiding_a_nul_is_400(any_client: TestClient) -> None:
    import base64

    raw = json.dumps(["2026-01-01T00:00:00+00:00", "id\x00x"]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert error_of(any_client.get("/v1/jobs", params={"cursor": cursor}), 400)["param"] == "cursor"


def test_openapi_documents_the_errors_and_the_job_body(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    create = document["paths"]["/v1/jobs"]["post"]
    content = create["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    assert content["application/json"]["schema"]["$ref"].endswith("/JobCreate")
    form = content["multipart/form-data"]["schema"]["properties"]
    assert form["image"]["format"] == "binary" and "steps_prior" in form
    assert "JobCreate" in document["components"]["schemas"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "400" in responses and "default" in responses, (method, path)
            for status, spec in responses.items():
                if status.startswith(("4", "5")) or status == "default":
                    schema = spec["content"]["application/json"]["schema"]
                    assert schema["$ref"].endswith("/ErrorBody"), (method, path, status)
            assert "503" in responses, (method, path)  # a database or broker down
    # The answers particular routes give beside those.
    paths = document["paths"]
    assert {"409", "422", "429", "413", "415"} <= set(create["responses"])
    assert "409" in paths["/v1/jobs/{job_id}/cancel"]["post"]["responses"]
    assert "409" in paths["/v1/jobs/{job_id}"]["delete"]["responses"]
    assert {"403", "410"} <= set(paths["/v1/jobs/{job_id}/images/{index}"]["get"]["responses"])
    assert {"409", "429"} <= set(paths["/v1/jobs/{job_id}/replay"]["post"]["responses"])
    assert "409" in paths["/v1/jobs/{job_id}/appeal"]["post"]["responses"]
    assert "403" in paths["/v1/admin/keys"]["get"]["responses"]


def test_401_and_503_are_the_error_shape(
    tmp_path: Path, client: TestClient, queue: RecordingQueue
) -> None:
    from .keys_support import keyed_settings

    settings = keyed_settings(tmp_path / "keyed", require_api_keys=True)
    app = create_app(settings, storage=LocalStorage(tmp_path / "s"), queue=RecordingQueue())
    with TestClient(app) as keyed:
        assert error_of(keyed.get("/v1/jobs"), 401)["code"] == "invalid_api_key"
    queue.down = True
    down = client.post("/v1/jobs", json={"prompt": "p"})
    assert error_of(down, 503)["code"] == "queue_unavailable" and down.headers["retry-after"]


@pytest.mark.parametrize("body", [b"nope", b"[]", b"null", b""])
def test_a_body_that_is_no_json_object_is_a_400_about_the_body(
    client: TestClient, body: bytes
) -> None:
    response = client.post(
        "/v1/images/generations", content=body, headers={"content-type": "application/json"}
    )
    error = error_of(response, 400)
    assert error["param"] == "body" and not error["message"].startswith(("0:", "None:"))


def test_an_unknown_webhook_event_names_the_allowed_ones(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={"prompt": "x", "webhook_url": "https://a.example/h",
                                             "webhook_events": ["done"]})  # fmt: skip
    error = error_of(response, 400)
    assert "'started'" in error["message"] and "'completed'" in error["message"]
    assert "None" not in error["message"]


def test_an_oversized_upload_names_the_limit_not_a_cut_read(client: TestClient) -> None:
    big = b"\x89PNG" + b"x" * (5 * 1024 * 1024)
    response = client.post("/v1/images/variations", files={"image": ("a.png", big, "image/png")})
    error = error_of(response, 413)
    assert "larger than 4194304 bytes" in error["message"] and "4194305" not in error["message"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [("/v1/images/generations", {"prompt": "x", "n": True}, "n"),
     ("/v1/jobs", {"prompt": "x", "n": True}, "n"),
     ("/v1/jobs", {"prompt": "x", "seed": False}, "seed"),
     ("/v1/jobs", {"prompt": "x", "steps": {"prior": True}}, "steps.prior"),
     ("/v1/jobs", {"prompt": "x", "decoder_guidance": True}, "decoder_guidance")],
)  # fmt: skip
def test_a_boolean_is_no_number(
    client: TestClient, path: str, body: dict[str, Any], param: str
) -> None:
    error = error_of(client.post(path, json=body), 400)
    assert error["param"] == param and "not true or false" in error["message"]
