"""The drills' TCP proxy: passes bytes, refuses like a stopped server, hangs and resumes, cuts."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from bench.drills_lib.tcp_proxy import Mode, TcpProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP echo server on a free port."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the proxy resets connections on purpose
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()
    thread.join()


@pytest.fixture
def proxy(echo_port: int) -> Iterator[TcpProxy]:
    with TcpProxy(("127.0.0.1", echo_port)) as running:
        yield running


def _roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return sock.recv(4096)


def _connect(proxy: TcpProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=2)


def test_pass_forwards_both_ways(proxy: TcpProxy) -> None:
    with _connect(proxy) as sock:
        assert _roundtrip(sock, b"hello") == b"hello"


def test_refuse_resets_open_connections_and_refuses_new_ones(proxy: TcpProxy) -> None:
    sock = _connect(proxy)
    assert _roundtrip(sock, b"one") == b"one"
    proxy.set_mode(Mode.refuse)
    with pytest.raises((ConnectionError, OSError)):
        sock.sendall(b"two")
        if not sock.recv(4096):
            raise ConnectionResetError("closed")
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        _connect(proxy)
    proxy.set_mode(Mode.passing)  # the same port serves again
    with _connect(proxy) as again:
        assert _roundtrip(again, b"three") == b"three"


def test_hang_holds_bytes_until_passing_again(proxy: TcpProxy) -> None:
    with _connect(proxy) as sock:
        assert _roundtrip(sock, b"before") == b"before"
        proxy.set_mode(Mode.hang)
        sock.settimeout(0.5)
        sock.sendall(b"during")
        with pytest.raises(TimeoutError):
            sock.recv(4096)
        with _connect(proxy) as fresh:  # a new connection is accepted, then held too
            fresh.settimeout(0.5)
            fresh.sendall(b"fresh")
            with pytest.raises(TimeoutError):
                fresh.recv(4096)
            proxy.set_mode(Mode.passing)
            fresh.settimeout(2)
            assert fresh.recv(4096) == b"fresh"
        sock.settimeout(2)
        assert sock.recv(4096) == b"during"


def test_cut_resets_only_connections_that_send_the_pattern(proxy: TcpProxy) -> None:
    rule = proxy.cut_when(b"job-42.decoder", for_s=60)
    with _connect(proxy) as other:
        assert _roundtrip(other, b"job-41.decoder") == b"job-41.decoder"
        with _connect(proxy) as victim:
            victim.sendall(b"LPUSH decoder {id: job-4")
            victim.sendall(b"2.decoder.2}")  # split across writes: still matched
            with pytest.raises((ConnectionError, OSError)):
                if not victim.recv(4096):
                    raise ConnectionResetError("closed")
        assert _roundtrip(other, b"still here") == b"still here"
    assert len(rule.hits) == 1
