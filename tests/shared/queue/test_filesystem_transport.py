"""The embedded broker's messages appear in the queue folder whole (kombu's own transport can
hand a consumer an empty file mid-write, which stopped the worker), and an unreadable file is
skipped instead of ending the worker."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu.transport import filesystem as kombu_filesystem

from shared.queue import filesystem_transport
from shared.queue.celery_app import celery_config, make_celery
from shared.settings import Settings


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[Any]:
    app = make_celery(Settings(data_dir=tmp_path))
    with app.connection_for_write() as connection:
        yield connection.default_channel


def _messages(folder: Path, queue: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(f".{queue}.msg"))


def test_the_filesystem_broker_uses_this_transport_and_redis_does_not(tmp_path: Path) -> None:
    assert celery_config(Settings(data_dir=tmp_path))["broker_transport"] == (
        filesystem_transport.TRANSPORT
    )
    redis = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0")
    assert "broker_transport" not in celery_config(redis)


def test_a_consumer_polling_mid_write_finds_nothing_then_the_whole_message(
    channel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(channel, filesystem_transport.Channel)
    folder = Path(channel.data_folder_in)
    seen_mid_write: list[list[str]] = []
    real = filesystem_transport.str_to_bytes

    def encode_while_a_consumer_polls(text: str) -> bytes:
        seen_mid_write.append(_messages(folder, "prior"))
        with pytest.raises(Empty):
            channel._get("prior")  # the consumer's poll while the file is being written
        return bytes(real(text))

    monkeypatch.setattr(filesystem_transport, "str_to_bytes", encode_while_a_consumer_polls)
    channel._put("prior", {"body": "x", "n": 1})
    assert seen_mid_write == [[]]
    assert channel._get("prior") == {"body": "x", "n": 1}
    assert list(folder.iterdir()) == []  # no part file left, the message taken


def test_kombus_own_transport_shows_the_file_before_it_is_written(
    channel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the transport exists: kombu creates the queue's file first and writes it after."""
    folder = Path(channel.data_folder_in)
    sizes: list[list[int]] = []
    real = kombu_filesystem.str_to_bytes

    def encode(text: str) -> bytes:
        sizes.append([(folder / n).stat().st_size for n in _messages(folder, "prior")])
        return bytes(real(text))

    monkeypatch.setattr(kombu_filesystem, "str_to_bytes", encode)
    kombu_filesystem.Channel._put(channel, "prior", {"body": "x"})
    assert sizes == [[0]]  # a consumer polling now would take an empty file


def test_an_unreadable_message_is_dropped_and_the_next_one_delivered(
    channel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    folder = Path(channel.data_folder_in)
    (folder / "0_00000000-0000-0000-0000-000000000000.prior.msg").write_bytes(b"")  # first
    channel._put("prior", {"body": "y"})
    with (
        caplog.at_level(logging.ERROR, logger=filesystem_transport.__name__),
        pytest.raises(Empty),
    ):
        channel._get("prior")
    assert "unreadable message of queue prior" in caplog.text
    assert channel._get("prior") == {"body": "y"}
