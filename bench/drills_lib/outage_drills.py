"""Drills where PostgreSQL or Redis is down (refused) or hung (black-holed) for a while, through
the stack's own TCP proxies; the shared servers keep running throughout."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from bench.drills_lib.drill import DrillContext
from bench.drills_lib.jobs import JobFacts

OUTAGE_S = 20.0
PROBE_EVERY_S = 4.0
PROBE_TIMEOUT_S = 5.0
ANSWER_WITHIN_S = 2.0  # what the issue asks of the API when a dependency fails
BUSY_STEPS = {"prior": 2, "decoder": 150, "upsampler": 2}


@dataclass(frozen=True)
class Probe:
    """One request to the API during the outage."""

    what: str
    status: int  # 0: no answer within PROBE_TIMEOUT_S
    seconds: float
    retry_after: str | None
    error: str | None = None


def _probe(client: httpx.Client, what: str, method: str, url: str) -> Probe:
    started = time.monotonic()
    try:
        response = client.request(method, url, timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return Probe(what, 0, time.monotonic() - started, None, type(exc).__name__)
    return Probe(
        what, response.status_code, time.monotonic() - started, response.headers.get("Retry-After")
    )


def _summary(probes: list[Probe], what: str) -> str:
    mine = [p for p in probes if p.what == what]
    codes = sorted({str(p.status) if p.status else f"none ({p.error})" for p in mine})
    slowest = max((p.seconds for p in mine), default=0.0)
    retry = sorted({p.retry_after for p in mine if p.retry_after})
    extra = f", Retry-After {'/'.join(retry)}" if retry else ""
    return f"{what}: {'/'.join(codes)} (max {slowest:.1f} s{extra})"


def _outage(ctx: DrillContext, proxy_name: str, mode: str) -> None:
    ctx.ensure_workers("w1", "w2")
    before = ctx.submit(6, steps=BUSY_STEPS)
    time.sleep(1.5)  # stages are running when the dependency goes away
    proxy = getattr(ctx.s, proxy_name)
    proxy.set_mode(mode)
    probes: list[Probe] = []
    started = time.monotonic()
    while time.monotonic() - started < OUTAGE_S:
        round_started = time.monotonic()
        ctx.submit(1, timeout_s=PROBE_TIMEOUT_S)
        last = ctx.submissions[-1]
        probes.append(Probe("POST", last.status, last.seconds, last.retry_after, last.error))
        probes.append(_probe(ctx.s.client, "/healthz", "GET", "/healthz"))
        probes.append(_probe(ctx.s.client, "GET job", "GET", f"/v1/jobs/{before[0]}"))
        time.sleep(max(0.0, PROBE_EVERY_S - (time.monotonic() - round_started)))
    proxy.set_mode("pass")
    ctx.damage()
    ctx.note(f"{proxy_name.split('_')[0]} {mode} for {time.monotonic() - started:.0f} s")
    ctx.note("; ".join(_summary(probes, w) for w in ("POST", "/healthz", "GET job")))
    health = [p for p in probes if p.what == "/healthz"]
    ctx.check(
        "/healthz answered 200 throughout",
        all(p.status == 200 and p.seconds < ANSWER_WITHIN_S for p in health),
    )
    posts = [p for p in probes if p.what == "POST"]
    ctx.check(
        f"POSTs answered (202, or 503 with Retry-After) within {ANSWER_WITHIN_S:.0f} s",
        all(
            p.seconds < ANSWER_WITHIN_S and (p.status == 202 or (p.status == 503 and p.retry_after))
            for p in posts
        ),
    )

    def accepted_succeeded(facts: list[JobFacts]) -> bool:
        return all(next((f.status for f in facts if f.id == i), "") == "succeeded" for i in before)

    ctx.after("the 6 jobs accepted before the outage succeeded", accepted_succeeded)


def db_down(ctx: DrillContext) -> None:
    """PostgreSQL refuses connections (open ones reset) for 20 s while stages run."""
    _outage(ctx, "pg_proxy", "refuse")


def db_hang(ctx: DrillContext) -> None:
    """PostgreSQL is black-holed (connections open, nothing answers) for 20 s."""
    _outage(ctx, "pg_proxy", "hang")


def broker_down(ctx: DrillContext) -> None:
    """Redis refuses connections (open ones reset) for 20 s while stages run."""
    _outage(ctx, "redis_proxy", "refuse")


def broker_hang(ctx: DrillContext) -> None:
    """Redis is black-holed for 20 s."""
    _outage(ctx, "redis_proxy", "hang")
