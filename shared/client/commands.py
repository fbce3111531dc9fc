"""`unclip submit|watch|jobs|cancel|fleet`: client commands over HTTP (typer + rich, no torch)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from shared.client.api_client import DEFAULT_SERVER, ApiClient, ClientError, encode_image
from shared.client.display import make_display
from shared.client.follow import JobState, follow
from shared.client.output_dir import prepare_output_dir, save_images
from shared.client.reconnect import Reconnect
from shared.client.tables import print_fleet, print_jobs

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Server = Annotated[str, typer.Option("--server", help="API base URL")]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", envvar="UNCLIP_API_KEY", help="API key (Bearer)")
]
AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output, no progress")]


class Kind(StrEnum):
    generate = "generate"
    variation = "variation"
    edit = "edit"
    mix = "mix"


def _fail(exc: ClientError) -> typer.Exit:
    err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
    return typer.Exit(1)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def parse_steps(text: str | None) -> dict[str, int] | None:
    """`P,D,U` (e.g. 10,10,4) as the steps object of a job."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise typer.BadParameter(f"{text!r} must be three whole numbers P,D,U, e.g. 10,10,4")
    return dict(zip(("prior", "decoder", "upsampler"), map(int, parts), strict=True))


def job_fields(
    kind: Kind, prompt: str | None, image: Path | None, mask: Path | None,
    n: int | None, size: str | None, seed: int | None, steps: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The POST /v1/jobs body these options stand for."""
    fields: dict[str, Any] = {"kind": kind.value}
    if kind is Kind.mix:
        entries: list[dict[str, Any]] = []
        if prompt:
            entries.append({"prompt": prompt})
        if image is not None:
            entries.append({"image": encode_image(image)})
        for entry in entries:
            entry["weight"] = 1.0 / len(entries)
        fields["mix"] = entries
    else:
        if prompt is not None:
            fields["prompt"] = prompt
        if image is not None:
            fields["image"] = encode_image(image)
        if mask is not None:
            fields["mask"] = encode_image(mask)
    optional = {"n": n, "size": size, "seed": seed, "steps": parse_steps(steps)}
    fields.update({k: v for k, v in optional.items() if v is not None})
    return fields


def _wait(client: ApiClient, job_id: str, *, quiet: bool) -> JobState:
    display = make_display(job_id, out, quiet=quiet)
    reconnect = Reconnect(notify=lambda line: err.print(f"{job_id}: {line}", highlight=False,
                                                        markup=False))  # fmt: skip
    state = JobState("unknown")
    try:
        for state in follow(client, job_id, reconnect=reconnect):
            display.update(state)
    finally:
        display.close()
    return state


def _wait_or_cancel(client: ApiClient, job_id: str, *, quiet: bool) -> JobState:
    """Follow the job; on Ctrl-C ask (on a terminal) whether to cancel it."""
    try:
        return _wait(client, job_id, quiet=quiet)
    except KeyboardInterrupt:
        if sys.stdin.isatty() and typer.confirm(f"\ncancel job {job_id}?", default=False):
            job = client.cancel(job_id)
            err.print(f"{job_id}: {job.get('status')}", highlight=False)
        else:
            err.print(f"left job {job_id} running; `unclip watch {job_id}` follows it again")
        raise typer.Exit(130) from None


def _finish(client: ApiClient, job_id: str, out_dir: Path | None, as_json: bool) -> None:
    """Report the finished job (and save its PNGs in out_dir); exit 1 unless it succeeded."""
    job = client.job(job_id)
    succeeded = job.get("status") == "succeeded"
    paths = save_images(client, job, out_dir) if succeeded and out_dir is not None else []
    if as_json:
        _print_json(job if out_dir is None else {**job, "files": [str(p) for p in paths]})
    else:
        for path in paths:
            out.print(str(path), highlight=False)
        if not succeeded:
            error = job.get("error") or {}
            reason = error.get("message") or job.get("status_reason") or ""
            err.print(f"{job_id}: {job.get('status')} {reason}".rstrip(), highlight=False,
                      markup=False)  # fmt: skip
    if not succeeded:
        raise typer.Exit(1)


@app.command()
def submit(
    prompt: Annotated[str | None, typer.Argument(help="the prompt (none for a variation)")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="input image file")] = None,
    mask: Annotated[
        Path | None, typer.Option("--mask", help="edit mask (alpha 0 = repaint)")
    ] = None,
    kind: Annotated[Kind | None, typer.Option("--kind", help="default: from the inputs")] = None,
    n: Annotated[int | None, typer.Option("-n", help="images to make")] = None,
    size: Annotated[str | None, typer.Option("--size", help="e.g. 256x256")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    steps: Annotated[str | None, typer.Option("--steps", help="P,D,U diffusion steps")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow the job and save its PNGs")] = False,
    out_dir: Annotated[Path, typer.Option("-o", help="folder for the PNGs")] = Path("."),
    server: Server = DEFAULT_SERVER,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Submit a job; with --wait, show its progress live and save the PNGs to -o DIR."""
    if kind is None:
        kind = (
            Kind.edit if mask is not None else Kind.variation if prompt is None else Kind.generate
        )
    with ApiClient(server, api_key) as client:
        try:
            if wait:
                prepare_output_dir(out_dir)  # a bad -o fails now, not after the render
            job = client.submit(job_fields(kind, prompt, image, mask, n, size, seed, steps))
            if not wait:
                _print_json(job) if as_json else out.print(job["id"], highlight=False)
                return
            _wait_or_cancel(client, job["id"], quiet=as_json)
            _finish(client, job["id"], out_dir, as_json)
        except ClientError as exc:
            raise _fail(exc) from exc


@app.command()
def watch(
    job_id: str,
    out_dir: Annotated[Path | None, typer.Option("-o", help="save the PNGs here")] = None,
    server: Server = DEFAULT_SERVER,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Follow a job's progress to its end (and save its PNGs with -o DIR); exit 1 unless it
    succeeded."""
    with ApiClient(server, api_key) as client:
        try:
            if out_dir is not None:
                prepare_output_dir(out_dir)
            _wait_or_cancel(client, job_id, quiet=as_json)
            _finish(client, job_id, out_dir, as_json)
        except ClientError as exc:
            raise _fail(exc) from exc


@app.command()
def jobs(
    status: Annotated[str | None, typer.Option("--status", help="only jobs in this status")] = None,
    limit: Annotated[int, typer.Option("--limit", help="how many, newest first")] = 20,
    server: Server = DEFAULT_SERVER,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """List your jobs, newest first."""
    with ApiClient(server, api_key) as client:
        try:
            page = client.jobs(status=status, limit=limit)
        except ClientError as exc:
            raise _fail(exc) from exc
    if as_json:
        _print_json(page)
        return
    print_jobs(out, [job for job in page.get("data") or [] if isinstance(job, dict)])


@app.command()
def cancel(
    job_id: str, server: Server = DEFAULT_SERVER, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Cancel a queued, held or running job."""
    with ApiClient(server, api_key) as client:
        try:
            job = client.cancel(job_id)
        except ClientError as exc:
            raise _fail(exc) from exc
    _print_json(job) if as_json else out.print(f"{job['id']}: {job['status']}", highlight=False)


@app.command()
def fleet(server: Server = DEFAULT_SERVER, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Workers, their queues and jobs, and queue depth per stage (an admin key)."""
    with ApiClient(server, api_key) as client:
        try:
            view = client.fleet()
        except ClientError as exc:
            raise _fail(exc) from exc
    if as_json:
        _print_json(view)
        return
    print_fleet(out, view)


def run_typer(name: str, argv: list[str]) -> int:
    """Run client command `name` with `argv` (called by the `unclip` dispatcher)."""
    command = typer.main.get_command(app)
    try:
        command.main(args=[name, *argv], prog_name="unclip", standalone_mode=True)
    except SystemExit as exit_:
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 1
    return 0
