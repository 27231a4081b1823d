"""Telegram tests' shared set-up: the stub fixture, a bot with its baseline, and the command
listener driven as `ringwatch run` drives it while a script talks to it."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.channels import configure
from bot.channels.telegram import TelegramChannel
from bot.config import load_config
from bot.store import Store
from tests.support.bot import Bot
from tests.support.source_server import SourceServer
from tests.support.synthetic import SyntheticAgency, to_kml
from tests.support.telegram_stub import TelegramStub
from tests.support.wait import wait_for

PATH = "/map.kml"
CHANNEL = "@ring_alerts"
ADMIN = 42


def telegram_section(
    stub: TelegramStub,
    *,
    threshold: int = 2,
    channel: str | None = CHANNEL,
    extra: str = "",
    images: bool = False,
) -> str:
    """A channel gets 20 messages a minute (3 s apart): tests that need no channel skip it.
    Alerts go as text (sendMessage) unless a test is about their map cards."""
    channel_line = f'channel = "{channel}"\n' if channel else ""
    return (
        f"[telegram]\nenabled = true\n{channel_line}admins = [{ADMIN}]\n"
        f"images = {str(images).lower()}\n"
        f'api_base_url = "{stub.base_url}"\n{extra}\n'
        f"[alerts]\ndigest_threshold = {threshold}\n"
    )


def agency(name: str, state: str, n: int = 0, profile: str = "") -> SyntheticAgency:
    return SyntheticAgency(
        name=name,
        city=f"{name.split()[0]}ville",
        state=state,
        active_date="2020-06-01",
        video_requests=0,
        profile_url=profile or f"https://ring.com/agency/{n}",
        lon=-93.0 - n / 100,
        lat=45.0 + n / 100,
    )


BASE = [agency(f"Base{i} Police Department", "IA", i) for i in range(1, 11)]


def subscribe(bot: Bot, chat_id: int, states: list[str] | None) -> None:
    store = Store.open(bot.config.db_path)
    try:
        store.subscribers.subscribe("telegram", str(chat_id), states=states, chat_type="private")
    finally:
        store.close()


# A map of 10 agencies that gains several at once: the additions guard must believe it.
SMALL_MAP_GUARD = "[guard]\nmax_added_share = 100\n"


def start_bot(directory: Path, source_server: SourceServer, section: str) -> Bot:
    """ringwatch with Telegram on, its baseline recorded (10 agencies in IA)."""
    created = Bot.create(
        directory, source_server.serve(PATH, to_kml(BASE)), section + SMALL_MAP_GUARD
    )
    assert created.poll().outcome == "baseline"
    return created


def texts(stub: TelegramStub, chat: int | str) -> list[str]:
    return stub.texts(chat)


def plain(text: str) -> str:
    """What a Telegram user reads: the HTML parsed."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))


# --- commands from real updates -----------------------------------------------------------


Say = Callable[[int, str], Awaitable[str]]


def drive_commands(config_path: Path, stub: TelegramStub, script: Callable[..., Awaitable]):
    """Run the command listener on a loop, as `ringwatch run` does, while `script` talks."""
    config = configure(load_config(config_path))

    async def say(chat: int, text: str, **kwargs) -> str:
        before = len(stub.texts(chat))
        stub.user_says(chat, text, **kwargs)
        # In a thread: the listener answers on this loop, which must not be blocked.
        unanswered = f"no answer to {text!r} in chat {chat}"
        await asyncio.to_thread(wait_for, lambda: len(stub.texts(chat)) > before, 60, unanswered)
        return plain(stub.texts(chat)[-1])

    async def main() -> None:
        store = Store.open(config.db_path)
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(task)
            for task in TelegramChannel(config).background_tasks(store, stop)
        ]
        try:
            await script(say, store)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            store.close()

    asyncio.run(main())
