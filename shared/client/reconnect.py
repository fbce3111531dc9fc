"""Riding out a server restart: bounded backoff between tries, one notice per outage."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.client.api_client import ApiError

GIVE_UP_AFTER_S = 45.0  # a restart of the API (or a redeploy behind a gateway) fits in this
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 5.0


def _ignore(_: str) -> None:
    return None


@dataclass
class Reconnect:
    """When a call fails transiently, wait and let it be tried again; give up after a while.

    `wait` sleeps 0.5, 1, 2, 4, 5, 5, ... seconds between tries, tells `notify` once per outage,
    and re-raises once the outage has lasted `give_up_after_s` (or at once for an error that is
    not transient, such as a 404). `recovered` ends the outage (any answer does).
    """

    give_up_after_s: float = GIVE_UP_AFTER_S
    first_delay_s: float = FIRST_DELAY_S
    max_delay_s: float = MAX_DELAY_S
    notify: Callable[[str], None] = _ignore
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _since: float | None = field(default=None, init=False)
    _delay: float = field(default=0.0, init=False)

    def wait(self, exc: ApiError) -> None:
        if not exc.transient:
            raise exc
        now = self.clock()
        if self._since is None:
            self._since, self._delay = now, self.first_delay_s
            self.notify(f"{exc}; reconnecting (for up to {self.give_up_after_s:.0f} s)")
        elif now - self._since >= self.give_up_after_s:
            raise ApiError(
                f"{exc.message}; gave up after {now - self._since:.0f} s of reconnecting",
                status=exc.status, code=exc.code,
            ) from exc  # fmt: skip
        self.sleep(self._delay)
        self._delay = min(self._delay * 2, self.max_delay_s)

    def recovered(self) -> None:
        self._since = None
