"""ApiClient: the HTTP calls the `unclip` client commands make (httpx; no torch, no FastAPI)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0
# The server pings an event stream every 15 s: a stream silent for this long is a dead
# connection (a host gone without closing it), to be reconnected, not waited on forever.
STREAM_READ_TIMEOUT_S = 60.0


# Answers worth another try after a pause: a gateway or a server that is restarting.
TRANSIENT_STATUSES = frozenset({502, 503, 504})


class ClientError(Exception):
    """A client command failed here (a file it cannot read or write); its message is the line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ApiError(ClientError):
    """The server answered an error (its message, code and HTTP status), or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def transient(self) -> bool:
        """No answer (refused, reset, timed out) or a gateway/restart status: try again later."""
        return self.status is None or self.status in TRANSIENT_STATUSES

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no answer"
        code = f", {self.code}" if self.code else ""
        return f"{self.message} ({where}{code})"


@dataclass(frozen=True)
class JobEvent:
    """One server-sent event of a job: its name, id and JSON payload."""

    event: str
    id: str | None
    data: dict[str, Any]


def _error_from(response: httpx.Response) -> ApiError:
    try:
        detail = response.json().get("error") or {}
        message = str(detail.get("message") or response.text)
        code = detail.get("code")
    except (ValueError, AttributeError):
        message, code = response.text or response.reason_phrase, None
    return ApiError(message, status=response.status_code, code=code)


def encode_image(path: Path) -> str:
    """The file's bytes as base64, as POST /v1/jobs takes images in JSON bodies."""
    try:
        return base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from exc


class ApiClient:
    """A thin client of the jobs API; every failure becomes an ApiError with the server's text."""

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=server.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach {self._http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = response.text[:80]
        if not isinstance(body, dict):
            raise ApiError(f"{method} {path} answered {type(body).__name__}, not a JSON object",
                           status=response.status_code)  # fmt: skip
        return body

    def submit(self, fields: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/jobs with a JSON body (images as base64); the new job."""
        return self._json("POST", "/v1/jobs", json=fields)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def jobs(self, *, status: str | None = None, limit: int = 20) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return self._json("GET", "/v1/jobs", params=params)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{job_id}/cancel")

    def fleet(self) -> dict[str, Any]:
        return self._json("GET", "/v1/fleet")

    def download(self, url: str) -> bytes:
        """An image by its URL (absolute, or a path on this server)."""
        return self._request("GET", url).content

    def events(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[JobEvent]:
        """The job's server-sent events until the stream ends; ApiError if there is none."""
        from httpx_sse import SSEError, connect_sse

        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        try:
            with connect_sse(
                self._http, "GET", f"/v1/jobs/{job_id}/events", headers=headers,
                timeout=httpx.Timeout(DEFAULT_TIMEOUT_S, read=STREAM_READ_TIMEOUT_S),
            ) as source:  # fmt: skip
                if source.response.status_code >= 400:
                    source.response.read()
                    raise _error_from(source.response)
                try:
                    for sse in source.iter_sse():
                        yield JobEvent(sse.event, sse.id or None, _payload(sse.data))
                except SSEError as exc:  # an answer, but not a stream: this server has none
                    raise ApiError(f"no event stream for job {job_id}: {exc}",
                                   status=source.response.status_code) from exc  # fmt: skip
        except httpx.HTTPError as exc:
            raise ApiError(f"event stream broke: {exc}") from exc


def _payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {"text": text}
    return value if isinstance(value, dict) else {"value": value}
