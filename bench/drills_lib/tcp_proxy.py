"""A small threaded TCP proxy for outage drills: pass, refuse, or hang (black-hole) on demand.

The shared PostgreSQL and Redis servers are never stopped; a drill points its processes at a
proxy in front of them and changes the proxy's mode instead:

- `pass`: bytes flow both ways.
- `refuse`: open connections are reset and the port is closed, so a new connect gets
  ECONNREFUSED (a server that is down).
- `hang`: connections stay open but nothing is forwarded, and new connects are accepted and
  then held (a server that is hung or a network that drops packets). On `pass` again held
  connections go on where they were, as after a stalled server resumes.

`cut_when(pattern, for_s)` resets any client connection whose outgoing bytes contain
`pattern`, during `for_s` seconds from the first match: a publish of one particular message
fails while every other connection keeps working.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType

POLL_S = 0.05
CHUNK = 65536
CONNECT_TIMEOUT_S = 5.0


class Mode(StrEnum):
    """What the proxy does with traffic now."""

    passing = "pass"
    refuse = "refuse"
    hang = "hang"


@dataclass
class CutRule:
    """Reset connections whose client bytes contain `pattern`, for `for_s` s after a first hit."""

    pattern: bytes
    for_s: float
    hits: list[float] = field(default_factory=list)

    def fires(self, now: float) -> bool:
        if self.hits and now - self.hits[0] > self.for_s:
            return False
        self.hits.append(now)
        return True


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a crashed server or a cut cable looks to the peer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """Listen on 127.0.0.1:`port` (0: any free port) and forward to `upstream`."""

    def __init__(self, upstream: tuple[str, int], *, port: int = 0, name: str = "proxy") -> None:
        self.upstream = upstream
        self.name = name
        self._mode = Mode.passing
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._rules: list[CutRule] = []
        self._closed = threading.Event()
        self._listener: socket.socket | None = None
        self.port = port
        self.accepted = 0
        self._listen()
        self.port = self._listener.getsockname()[1] if self._listener else port
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"{name}-accept", daemon=True
        )

    # ---- control -----------------------------------------------------------------------
    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: Mode | str) -> None:
        """Switch to `mode`; refuse resets every open connection and closes the port."""
        mode = Mode(mode)
        with self._lock:
            self._mode = mode
            if mode is Mode.refuse:
                self._unlisten()
                for sock in list(self._sockets):
                    _reset(sock)
                self._sockets.clear()
            elif self._listener is None:
                self._listen()

    def cut_when(self, pattern: bytes, *, for_s: float) -> CutRule:
        """Reset client connections that send `pattern`, for `for_s` s after the first hit."""
        rule = CutRule(pattern, for_s)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._unlisten()
            for sock in list(self._sockets):
                _reset(sock)
            self._sockets.clear()

    # ---- the listening socket ----------------------------------------------------------
    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener

    def _unlisten(self) -> None:
        if self._listener is not None:
            # shutdown first: the accept thread's select() holds the socket open past close()
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            listener = self._listener
            if listener is None:
                time.sleep(POLL_S)
                continue
            try:
                ready, _, _ = select.select([listener], [], [], POLL_S)
                if not ready:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):  # closed under us by set_mode(refuse)
                continue
            self.accepted += 1
            with self._lock:
                self._sockets.add(client)
            threading.Thread(
                target=self._serve, args=(client,), name=f"{self.name}-conn", daemon=True
            ).start()

    # ---- one connection --------------------------------------------------------------
    def _wait_while_hung(self) -> bool:
        """Hold while the mode is hang; False once the connection should be dropped."""
        while self._mode is Mode.hang and not self._closed.is_set():
            time.sleep(POLL_S)
        return self._mode is Mode.passing and not self._closed.is_set()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            if not self._wait_while_hung():
                return
            upstream = socket.create_connection(self.upstream, timeout=CONNECT_TIMEOUT_S)
            upstream.settimeout(None)
            with self._lock:
                if self._mode is Mode.refuse or self._closed.is_set():
                    return
                self._sockets.add(upstream)
            self._pump(client, upstream)
        except (OSError, ValueError):  # reset under us by set_mode(refuse) or close()
            pass
        finally:
            with self._lock:
                self._sockets.discard(client)
                if upstream is not None:
                    self._sockets.discard(upstream)
            _reset(client)
            if upstream is not None:
                _reset(upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        tail = b""  # the end of the last client chunk, so a pattern split across reads matches
        longest = 0
        while True:
            if not self._wait_while_hung():
                return
            ready, _, _ = select.select([client, upstream], [], [], POLL_S)
            for sock in ready:
                data = sock.recv(CHUNK)
                if not data:
                    return
                if sock is client:
                    with self._lock:
                        rules = list(self._rules)
                    longest = max([longest, *(len(r.pattern) for r in rules)])
                    window = tail + data
                    now = time.monotonic()
                    if any(r.pattern in window and r.fires(now) for r in rules):
                        return  # the connection is reset; the matched bytes never arrive
                    tail = window[-longest:] if longest else b""
                    upstream.sendall(data)
                else:
                    client.sendall(data)
