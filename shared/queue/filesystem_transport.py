"""kombu's filesystem transport (the embedded default's broker), with message files that appear
in the queue folder whole.

kombu's `filesystem.Channel._put` creates a message's file in the queue folder, then locks it
and writes it; `_get` lists the folder, moves a file out and reads it without the lock. A
consumer that polls between a producer's create and its write (every 20 ms here, with the API
publishing a burst of jobs) takes an empty file: `loads('')` raises, Celery's consumer treats
that as unrecoverable and the worker exits (which stops `unclip up`), and the message is lost,
its bytes written into the file the consumer already moved and deleted. Seen here on
2026-12-03 (docs/benchmarks.md "Service images/s"): `Unrecoverable error:
JSONDecodeError('Expecting value: line 1 column 1 (char 0)')` mid-benchmark.

Here a message is written to a hidden `.<name>.part` file in the same folder, which `_get`
never takes (it only takes `<stamp>_<id>.<queue>.msg`), and renamed to its name when whole: a
rename within a folder is atomic, so a consumer finds no file or the complete one. A file
that still cannot be decoded (one a crashed older producer left) is logged and skipped rather
than taken as the end of the worker; its job is left without a message, which the sweeper
re-publishes.
"""

from __future__ import annotations

import logging
import os
import uuid
from contextlib import suppress
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

log = logging.getLogger(__name__)

# What Celery's `broker_transport` names for a filesystem:// broker (shared/queue/celery_app.py).
TRANSPORT = f"{__name__}:Transport"


def message_name(queue: str) -> str:
    """A message file's name as kombu's transport orders and filters them."""
    return f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"


class Channel(filesystem.Channel):
    """kombu's filesystem channel, writing each message aside and renaming it in."""

    # kombu's own signatures differ between its base and filesystem channels; this is the latter.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        folder = Path(self.data_folder_out)
        name = message_name(queue)
        part = folder / f".{name}.part"
        try:
            with open(part, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))  # type: ignore[no-untyped-call]
            os.replace(part, folder / name)
        except OSError as exc:
            with suppress(OSError):
                part.unlink()
            raise ChannelError(f"Cannot add file {str(folder / name)!r} to directory") from exc

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        try:
            return super()._get(queue)  # type: ignore[no-untyped-call]
        except ValueError:  # a message file that is not JSON: already taken out of the queue
            log.error("filesystem broker: an unreadable message of queue %s was dropped; the "
                      "sweeper re-publishes its job", queue)  # fmt: skip
            raise Empty() from None


class Transport(filesystem.Transport):
    Channel = Channel
