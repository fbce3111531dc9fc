"""Send-time target checks: the host is resolved at every attempt, a refused address fails the
delivery for good, and the connection goes to the address checked (TLS still names the host)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook

from shared.db.job_events import record_event
from shared.db.models import WebhookDelivery
from shared.db.webhooks import deliveries_for_job
from shared.settings import Settings, Webhooks
from shared.webhooks.dispatcher import Dispatcher
from shared.webhooks.sender import Sender, post_pinned
from shared.webhooks.signing import webhook_secret
from shared.webhooks.targets import IPAddress

PUBLIC = ipaddress.ip_address("93.184.215.14")


def _strict(settings: Settings) -> Settings:
    """The settings with private targets refused, as production has them."""
    return settings.model_copy(update={"webhooks": Webhooks(allow_private_targets=False)})


class Recorder:
    """A mocked transport that answers 200 and keeps every request it was sent."""

    def __init__(self, fail_hosts: tuple[str, ...] = ()) -> None:
        self.requests: list[httpx.Request] = []
        self.fail_hosts = fail_hosts
        self.client = httpx.Client(transport=httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in self.fail_hosts:
            raise httpx.ConnectError("connection refused", request=request)
        self.requests.append(request)
        return httpx.Response(200)


def _resolver(answers: dict[str, list[str]], asked: list[str]) -> Callable[[str], list[IPAddress]]:
    def resolve(host: str) -> list[IPAddress]:
        asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in answers[host]]

    return resolve


def _one_delivery(sessions: sessionmaker[Session], make_job: Callable[..., str],
                  url: str) -> str:  # fmt: skip
    job_id = make_job(webhook_url=url)
    with sessions.begin() as session:
        record_event(session, job_id, "failed", {"code": "x"})
    return job_id


def test_a_host_that_now_resolves_to_loopback_fails_for_good_without_a_request(
    sqlite_settings: Settings, db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    """DNS rebinding: public when the job was submitted, 127.0.0.1 when the webhook is sent."""
    job_id = _one_delivery(db_sessions, make_job, "https://rebind.example/hook")
    recorder, asked = Recorder(), []  # type: Recorder, list[str]
    resolve = _resolver({"rebind.example": ["93.184.215.14", "127.0.0.1"]}, asked)
    dispatcher = Dispatcher(_strict(sqlite_settings), db_sessions, http=recorder.client,
                            resolve=resolve)  # fmt: skip
    assert dispatcher.run_once() == 1
    assert dispatcher.run_once() == 0  # not scheduled again
    assert recorder.requests == [] and asked == ["rebind.example"]
    with db_sessions() as session:
        [(delivery, attempts)] = deliveries_for_job(session, job_id)
    assert delivery.status == "failed" and delivery.attempts == 1
    [attempt] = attempts
    assert attempt.status_code is None and attempt.error is not None
    assert "loopback address (127.0.0.1)" in attempt.error
    assert "public hosts only" in attempt.error


def test_the_checked_address_is_connected_to_with_the_name_kept(
    sqlite_settings: Settings, db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    job_id = _one_delivery(db_sessions, make_job, "https://hooks.example:8443/in?x=1")
    recorder = Recorder()
    resolve = _resolver({"hooks.example": [str(PUBLIC)]}, [])
    dispatcher = Dispatcher(_strict(sqlite_settings), db_sessions, http=recorder.client,
                            resolve=resolve)  # fmt: skip
    assert dispatcher.run_once() == 1
    [request] = recorder.requests
    assert str(request.url) == "https://93.184.215.14:8443/in?x=1"
    assert request.headers["host"] == "hooks.example:8443"
    assert request.extensions["sni_hostname"] == "hooks.example"
    secret = webhook_secret(sqlite_settings.api_key_secret.get_secret_value(), "local")
    verified = Webhook(secret).verify(request.content.decode(), dict(request.headers))
    assert verified["job_id"] == job_id
    with db_sessions() as session:
        [(delivery, _)] = deliveries_for_job(session, job_id)
    assert delivery.status == "delivered"


def test_the_next_checked_address_is_tried_when_one_refuses_the_connection(
    sqlite_settings: Settings,
) -> None:
    recorder = Recorder(fail_hosts=("2606:4700::1111",))
    resolve = _resolver({"hooks.example": ["2606:4700::1111", str(PUBLIC)]}, [])
    sender = Sender(_strict(sqlite_settings), http=recorder.client, resolve=resolve)
    response = sender.post("http://hooks.example/hook", "{}", {})
    assert response.status_code == 200
    assert [r.url.host for r in recorder.requests] == [str(PUBLIC)]
    assert recorder.requests[0].headers["host"] == "hooks.example"
    assert "sni_hostname" not in recorder.requests[0].extensions  # plain http: no TLS


def test_a_host_that_does_not_resolve_is_an_ordinary_failed_attempt(
    sqlite_settings: Settings, db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    job_id = _one_delivery(db_sessions, make_job, "https://gone.example/hook")
    dispatcher = Dispatcher(_strict(sqlite_settings), db_sessions, http=Recorder().client,
                            resolve=_resolver({}, []))  # fmt: skip
    assert dispatcher.run_once() == 1
    with db_sessions() as session:
        [(delivery, [attempt])] = deliveries_for_job(session, job_id)
    assert delivery.status == "pending"  # DNS may be back by the next try
    assert attempt.error is not None and "does not resolve" in attempt.error


def test_private_targets_allowed_send_to_the_url_without_a_lookup(
    sqlite_settings: Settings,
) -> None:
    recorder, asked = Recorder(), []  # type: Recorder, list[str]
    sender = Sender(sqlite_settings, http=recorder.client, resolve=_resolver({}, asked))
    assert sender.post("http://localhost:9/hook", "{}", {}).status_code == 200
    assert asked == [] and str(recorder.requests[0].url) == "http://localhost:9/hook"


def test_a_stored_url_refused_by_todays_rules_fails_at_once(sqlite_settings: Settings) -> None:
    """Rows written before a range was refused (here CGNAT) are checked by the current rules."""
    delivery = WebhookDelivery(id="msg_1", job_id="j", scope="local", event="completed",
                               url="http://100.64.1.2/hook", payload={})  # fmt: skip
    recorder = Recorder()
    outcome = Sender(_strict(sqlite_settings), http=recorder.client).attempt(delivery)
    assert outcome.final and not outcome.delivered and recorder.requests == []
    assert outcome.error is not None and "carrier-grade NAT" in outcome.error


# A real TLS connection to a pinned address: the certificate is checked for the URL's name.


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a leaf certificate for `name` signed by it: (ca.pem, leaf.pem, leaf.key)."""
    now = dt.datetime.now(dt.UTC)

    def _make(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )  # fmt: skip
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)  # fmt: skip
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    ca = _make("test ca", ca_key, "test ca", ca_key, ca=True)
    leaf = _make(name, leaf_key, "test ca", ca_key, ca=False)
    paths = tmp_path / "ca.pem", tmp_path / "leaf.pem", tmp_path / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    return paths


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[int, Path, list[tuple[str | None, str]]]]:
    """An HTTPS receiver on 127.0.0.1 with a certificate for hooks.test: (port, CA file, the
    (SNI, Host) of each request)."""
    ca, leaf, key = _certificate(tmp_path, "hooks.test")
    seen: list[tuple[str | None, str]] = []
    names: dict[int, str | None] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers["content-length"]))
            seen.append((names.get(id(self.connection)), self.headers["host"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return None

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf, key)
    context.sni_callback = lambda sock, name, _ctx: names.__setitem__(id(sock), name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], ca, seen
    server.shutdown()


def test_a_pinned_tls_connection_sends_sni_and_checks_the_certificate_for_the_name(
    tls_receiver: tuple[int, Path, list[tuple[str | None, str]]],
) -> None:
    port, ca, seen = tls_receiver
    loopback = ipaddress.ip_address("127.0.0.1")
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=5) as http:
        url = httpx.URL(f"https://hooks.test:{port}/hook")
        assert post_pinned(http, url, loopback, "{}", {}).status_code == 200
        assert seen == [("hooks.test", f"hooks.test:{port}")]
        other = httpx.URL(f"https://elsewhere.test:{port}/hook")  # the certificate is not its
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            post_pinned(http, other, loopback, "{}", {})
    assert len(seen) == 1
