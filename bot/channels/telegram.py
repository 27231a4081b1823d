"""The Telegram channel: alerts to a channel, to subscribers (filtered by state) and
warnings to the maintainers' chats, through python-telegram-bot against the Bot API.

Telegram's limits are respected before it has to say so: `TelegramPacer` spaces sends
to about 30 a second overall, 1 a second per private chat and 20 a minute per group or
channel (AIORateLimiter has no per-private-chat limit). Outbox sends take their turn in
`admit`, before deliver.py claims the row, so a row waiting for its turn is never "in
flight"; the bot that sends them has no rate limiter of its own. A 429 still pauses the whole
channel for `retry_after`; a chat that blocked the bot or is gone is deactivated;
network trouble is raised as is, so deliver.py retries it with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bot.areas import Filter
from bot.channels import channel_settings
from bot.channels.base import (
    Channel,
    MaintainerWarning,
    PermanentFailure,
    RecipientGone,
    RetryLater,
)
from bot.channels.telegram_chat import (
    CHANNEL,
    TOKEN_ENV,
    TelegramSettings,
    message_style,
    visible_length,
)
from bot.messages import Delivery, Recipient, Style
from bot.store import Store

# python-telegram-bot is imported where it is used: a config naming [telegram] loads this
# module (for its settings) even when the channel is off, and PTB costs every command ~70 ms.
if TYPE_CHECKING:
    from telegram import Message
    from telegram.ext import ExtBot

    from bot.config import Config

log = logging.getLogger(__name__)

# Durations from PTB (RetryAfter.retry_after) as timedeltas, without the deprecation
# warning PTB 22 gives for the old float form; `seconds()` below accepts both.
os.environ.setdefault("PTB_TIMEDELTA", "1")

PRIVATE_CHAT_INTERVAL = 1.0  # seconds between messages to one private chat
GROUP_CHAT_INTERVAL = 3.0  # 20 a minute to one group or channel
INVALID_TOKEN_PAUSE = 600.0
UNREACHABLE_PAUSE = 60.0
# A chat that can never receive from us again, whatever the description's capitalisation.
_GONE = re.compile(r"chat not found|user is deactivated|bot was kicked|not a member", re.I)


def chat_id_param(recipient: str) -> int | str:
    """'123' and '-100123' are numeric ids; '@name' stays a username."""
    return int(recipient) if recipient.lstrip("-").isdigit() else recipient


def is_private_chat(chat_id: int | str) -> bool:
    """Private chats have positive ids; groups and channels negative ids or @names."""
    return isinstance(chat_id, int) and chat_id > 0


def seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramPacer:
    """Spaces message sends so Telegram never has to answer 429.

    PTB's BaseRateLimiter interface (initialize, shutdown, process_request), without
    subclassing it, which would import PTB with this module.

    Every send reserves the next free slot of its chat (1 s apart for a private chat,
    3 s for a group or channel), then the next free slot overall (1/rate apart).
    Reservations are synchronous, so concurrent senders on one loop never collide.
    Calls that send nothing (getUpdates, getChatMember) pass straight through.
    """

    LIMITED_PREFIXES = ("send", "forward", "copy")

    def __init__(self, messages_per_second: float = 30.0) -> None:
        self.interval = 1.0 / messages_per_second
        self._next_any = 0.0
        self._paused_until = 0.0
        self._last_sent = float("-inf")
        self._next_chat: dict[str, float] = {}

    async def initialize(self) -> None:
        """Nothing to set up; one pacer serves every Bot of the process."""

    async def shutdown(self) -> None:
        """Nothing to release."""

    def pause(self, delay: float) -> None:
        """Telegram asked for a flood wait: nothing is sent before it ends."""
        self._paused_until = max(self._paused_until, asyncio.get_running_loop().time() + delay)

    async def wait_turn(self, chat_id: int | str) -> None:
        loop = asyncio.get_running_loop()
        key = str(chat_id)
        spacing = PRIVATE_CHAT_INTERVAL if is_private_chat(chat_id) else GROUP_CHAT_INTERVAL
        chat_slot = max(loop.time(), self._next_chat.get(key, 0.0))
        self._next_chat[key] = chat_slot + spacing
        await asyncio.sleep(chat_slot - loop.time())
        while True:
            slot = max(loop.time(), self._next_any, self._paused_until)
            self._next_any = slot + self.interval
            await asyncio.sleep(slot - loop.time())
            now = loop.time()
            # A flood wait that began while we slept, or a stalled loop waking several
            # senders at once, would make a burst: queue up again instead. (Half an
            # interval of tolerance absorbs the ordinary lateness of asyncio.sleep.)
            if now >= self._paused_until and now >= self._last_sent + self.interval / 2:
                self._last_sent = now
                break
        # The chat's clock starts when the message really leaves.
        self._next_chat[key] = max(self._next_chat[key], loop.time() + spacing)

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        chat_id = data.get("chat_id")
        if chat_id is not None and endpoint.startswith(self.LIMITED_PREFIXES):
            await self.wait_turn(chat_id)
        return await callback(*args, **kwargs)


def make_bot(config: Config, token: str, pacer: TelegramPacer | None) -> ExtBot[None]:
    """A Bot for `[telegram] api_base_url` whose connection pool fits the concurrency.
    Without a pacer the caller paces its sends itself (TelegramChannel.admit)."""
    from telegram.ext import ExtBot
    from telegram.request import HTTPXRequest

    pool = TelegramChannel.concurrency + 8
    return ExtBot(
        token,
        base_url=channel_settings(config, CHANNEL).api_base_url,
        request=HTTPXRequest(connection_pool_size=pool, pool_timeout=30.0),
        rate_limiter=pacer,
    )


class TelegramChannel(Channel):
    name = CHANNEL
    Settings = TelegramSettings
    secrets = (TOKEN_ENV,)
    takes_images = True
    # Recipients served at once, so the pacer's 30/s stays busy while some wait for their
    # chat's turn; alerts.max_in_flight bounds the requests actually on the wire.
    concurrency: ClassVar[int] = 64

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.pacer = TelegramPacer(self.settings.messages_per_second)
        self._bot: ExtBot[None] | None = None
        self._open_error: Exception | None = None
        self._migrated: dict[str, str] = {}
        # Card name → Telegram's file_id of its first upload: a broadcast uploads once.
        self._file_ids: dict[str, str] = {}
        self._uploads: dict[str, asyncio.Lock] = {}

    @property
    def token(self) -> str:
        return os.environ.get(TOKEN_ENV, "").strip()

    @classmethod
    def check_settings(cls, settings: TelegramSettings) -> list[tuple[str, str]]:
        problems = []
        if settings.messages_per_second <= 0:
            problems.append(("messages_per_second", "must be positive"))
        if settings.commands_per_user < 1:
            problems.append(("commands_per_user", "must be at least 1"))
        if settings.command_window <= 0:
            problems.append(("command_window", "must be a positive duration such as '10s'"))
        return problems

    def style(self) -> Style:
        return message_style()

    def recipients(self, store: Store) -> list[Recipient]:
        """The channel, every active subscriber (with their states), and the admins.

        One chat is one recipient: an admin who also subscribed gets alerts (by their
        filter) and warnings, each once.
        """
        found: dict[str, Recipient] = {}
        if self.settings.channel:
            found[self.settings.channel] = Recipient(self.settings.channel)
        for subscriber in store.subscribers.active(CHANNEL):
            found[subscriber.chat_id] = Recipient(subscriber.chat_id, follows=subscriber.follows)
        for admin in map(str, self.settings.admins):
            existing = found.get(admin)
            found[admin] = Recipient(
                admin,
                follows=existing.follows if existing else Filter(),
                alerts=existing is not None,
                maintainer=True,
            )
        return list(found.values())

    async def open(self, store: Store, warn: MaintainerWarning) -> None:
        await super().open(store, warn)
        self._bot = make_bot(self.config, self.token, None)
        try:
            await self._bot.initialize()
            self._open_error = None
        except Exception as exc:  # the Bot API unreachable or the token rejected
            self._open_error = exc  # send() turns it into a retry, so a round never crashes

    async def close(self) -> None:
        if self._bot is not None:
            await self._bot.shutdown()
            self._bot = None
        await super().close()

    async def admit(self, delivery: Delivery) -> None:
        recipient = self._migrated.get(delivery.recipient, delivery.recipient)
        await self.pacer.wait_turn(chat_id_param(recipient))

    async def send(self, delivery: Delivery) -> str | None:
        from telegram.error import ChatMigrated

        if self._bot is None or self._open_error is not None:
            error = self._translate(self._open_error or RuntimeError("the channel is not open"))
            if isinstance(error, RetryLater):
                raise error
            # Unreachable: one message counts the attempt, the rest wait with it.
            raise RetryLater(UNREACHABLE_PAUSE, f"Bot API unreachable: {error}", whole_channel=True)
        recipient = self._migrated.get(delivery.recipient, delivery.recipient)
        try:
            try:
                message = await self._send(recipient, delivery)
            except ChatMigrated as exc:
                new_chat = str(exc.new_chat_id)
                self._follow_migration(delivery.recipient, new_chat)
                await self.pacer.wait_turn(chat_id_param(new_chat))
                message = await self._send(new_chat, delivery)
        except Exception as exc:
            error = self._translate(exc)
            if isinstance(error, RecipientGone) and self._configured(delivery.recipient):
                # A chat named in the config is a maintainer's mistake to fix, not a
                # subscriber leaving: fail this message, keep the rest queued for it.
                error = PermanentFailure(f"configured chat {delivery.recipient}: {error}")
            raise error from exc
        return str(message.message_id)

    def _configured(self, recipient: str) -> bool:
        return recipient == self.settings.channel or recipient in map(str, self.settings.admins)

    async def _send(self, recipient: str, delivery: Delivery) -> Message:
        from telegram import LinkPreviewOptions
        from telegram.constants import MessageLimit, ParseMode

        assert self._bot is not None
        chat_id = chat_id_param(recipient)
        text = delivery.text
        if delivery.card is not None:
            return await self._send_card(chat_id, delivery)
        attachment = delivery.attachment
        if attachment:
            caption_fits = visible_length(text) <= MessageLimit.CAPTION_LENGTH
            with Path(attachment).open("rb") as photo:
                sent = await self._bot.send_photo(
                    chat_id,
                    photo,
                    caption=text if caption_fits else None,
                    parse_mode=ParseMode.HTML,
                )
            if caption_fits:
                return sent
            await self.pacer.wait_turn(chat_id)  # the text is a second message to pace
        return await self._bot.send_message(
            chat_id,
            text,
            parse_mode=ParseMode.HTML,
            link_preview_options=LinkPreviewOptions(is_disabled=not self.settings.link_previews),
        )

    async def _send_card(self, chat_id: int | str, delivery: Delivery) -> Message:
        """The card with the alert as its caption when the caption fits 1,024 characters;
        otherwise the card, then the text as a reply to it."""
        from telegram import LinkPreviewOptions, ReplyParameters
        from telegram.constants import MessageLimit, ParseMode

        assert self._bot is not None and delivery.card is not None
        card = delivery.card
        caption_fits = visible_length(delivery.text) <= MessageLimit.CAPTION_LENGTH
        caption = delivery.text if caption_fits else None
        # The first send of a card uploads it; every other chat gets Telegram's file_id
        # (the lock holds the others back until the first upload has answered).
        async with self._uploads.setdefault(card.name, asyncio.Lock()):
            file_id = self._file_ids.get(card.name)
            if file_id is None:
                photo = await self._bot.send_photo(
                    chat_id,
                    Path(card.path).read_bytes(),
                    caption=caption,
                    parse_mode=ParseMode.HTML,
                )
                self._file_ids[card.name] = photo.photo[-1].file_id
        if file_id is not None:
            photo = await self._bot.send_photo(
                chat_id, file_id, caption=caption, parse_mode=ParseMode.HTML
            )
        if caption_fits:
            return photo
        await self.pacer.wait_turn(chat_id)  # the text is a second message to pace
        return await self._bot.send_message(
            chat_id,
            delivery.text,
            parse_mode=ParseMode.HTML,
            reply_parameters=ReplyParameters(photo.message_id),
            link_preview_options=LinkPreviewOptions(is_disabled=not self.settings.link_previews),
        )

    def _translate(self, exc: Exception) -> Exception:
        """Telegram's answer → what deliver.py should do with the message."""
        from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter

        if isinstance(exc, RetryAfter):
            delay = seconds(exc.retry_after)
            self.pacer.pause(delay)
            return RetryLater(delay, f"flood wait {delay:g}s", whole_channel=True, counts=False)
        if isinstance(exc, InvalidToken):
            # Never str(exc): PTB puts the token in that message.
            return RetryLater(
                INVALID_TOKEN_PAUSE, f"the Bot API rejected {TOKEN_ENV}", whole_channel=True
            )
        if isinstance(exc, Forbidden):
            return RecipientGone(exc.message)
        if isinstance(exc, BadRequest):  # before NetworkError: BadRequest subclasses it
            if _GONE.search(exc.message):
                return RecipientGone(exc.message)
            return PermanentFailure(exc.message)
        if isinstance(exc, OSError):  # an unreadable attachment
            return PermanentFailure(f"cannot read attachment: {exc}")
        return exc  # NetworkError, TimedOut and the rest: retried with backoff

    def _follow_migration(self, old_chat: str, new_chat: str) -> None:
        log.info("telegram: chat %s moved to %s; following it", old_chat, new_chat)
        self._migrated[old_chat] = new_chat
        assert self.store is not None, "open() first"
        self.store.migrate_subscriber(CHANNEL, old_chat, new_chat)

    def recipient_gone(self, store: Store, recipient: str, reason: str) -> None:
        if store.subscribers.deactivate(CHANNEL, recipient, reason):
            log.info("telegram: unsubscribed chat %s: %s", recipient, reason)
        else:
            log.error("telegram: configured chat %s cannot be reached: %s", recipient, reason)

    def background_tasks(
        self, store: Store, stop: asyncio.Event
    ) -> list[Coroutine[Any, Any, None]]:
        from bot.channels.telegram_commands import listen

        return [listen(self.config, store, stop, make_bot(self.config, self.token, self.pacer))]

    def status_lines(self, store: Store) -> list[str]:
        """Counts only: where a subscriber lives is never shown (docs/channels.md)."""
        subscribers = store.subscribers.active(CHANNEL)
        kinds = {"by state": 0, "by place": 0, "by county": 0}
        for subscriber in subscribers:
            kinds["by state"] += bool(subscriber.states)
            kinds["by place"] += bool(subscriber.places)
            kinds["by county"] += bool(subscriber.counties)
        by_kind = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        target = self.settings.channel or "no channel"
        return [
            f"{len(subscribers)} active subscribers ({by_kind}), "
            f"{target}, {len(self.settings.admins)} admins"
        ]
