"""Telegram commands: people subscribe, filter by state and ask questions in chat.

Runs inside `ringwatch run` (TelegramChannel.background_tasks) on the same asyncio loop
as the scheduler: `async with application` initialises it and always shuts it down, and
in between it is started and stopped step by step (start, updater.start_polling …
updater.stop, stop), never with run_polling, which would take over the loop and the
signals. Handlers use the runner's Store on the loop
thread; every database call is short and never spans an await.

One user must not be able to silence the bot (FairUpdates): chats are handled side by
side, each chat's updates in order, and each user gets telegram.commands_per_user
commands per telegram.command_window; the rest are dropped before they wait for
anything (with one "slow down" a minute). Every reply stays under Telegram's 4096
characters, and stopping drops the updates still queued.
"""

from __future__ import annotations

import asyncio
import enum
import html
import inspect
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from telegram import BotCommand, LinkPreviewOptions, Update
from telegram.constants import ChatMemberStatus, ChatType, MessageLimit
from telegram.error import InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseUpdateProcessor,
    CommandHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    filters,
)

from bot.channels import channel_settings
from bot.channels.telegram_chat import (
    CHANNEL,
    TOKEN_ENV,
    message_style,
    visible_length,
    visible_text,
)
from bot.models import DETAIL_FIELDS, Agency, Change, ChangeKind
from bot.normalise import state_code
from bot.queries import ChangeFilter, agencies_by_state, query_changes, read_status
from bot.render import ELLIPSIS, make_environment, render_change, split_text, truncate
from bot.store import Store
from bot.store.subscribers import Subscriber

if TYPE_CHECKING:
    from bot.config import Config

log = logging.getLogger(__name__)

COMMANDS = (
    ("start", "Subscribe to every alert"),
    ("subscribe", "Subscribe to some states: /subscribe MN WI (none: all)"),
    ("unsubscribe", "Stop all alerts"),
    ("states", "Show which states you follow"),
    ("latest", "The last few changes"),
    ("stats", "Partnership totals"),
    ("help", "What this bot does"),
)
LATEST_COUNT = 5
STATS_TOP_STATES = 10
RECENT_DAYS = 30
LONG_POLL_SECONDS = 10
RETRY_FIRST, RETRY_MAX = 5.0, 300.0
ADMIN_STATUSES = (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
MAX_REPLY = MessageLimit.MAX_TEXT_LENGTH
SLOW_DOWN_EVERY = 60.0  # seconds between two "slow down" replies to one user
SLOW_DOWN = "Slow down: I answer {limit} commands every {window}; the rest are ignored."
# Updates handled at once (different chats; one chat's wait in line). Dropped ones take no
# time, so a flood holds at most commands_per_user + 1 of these per user.
MAX_CONCURRENT_UPDATES = 256
# How much of a reply may quote the user's own words back ("Not a US state: …").
QUOTE_BUDGET = 300
QUOTED_WORD_MAX = 40

HELP = (
    "I post every change to Ring's map of police partnerships: new partners, ended "
    "partnerships, renames.\n\n"
    + "\n".join(f"/{name} - {html.escape(text)}" for name, text in COMMANDS)
    + "\n\nStates are two-letter codes or names: <code>/subscribe MN WI</code>, "
    "<code>/subscribe New York</code>. In a group, only an administrator can change "
    "the subscription."
)


def parse_states(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Command arguments → (USPS codes, words not understood).

    A state name may span words ("New York", "District of Columbia"); the longest
    match wins, so "West Virginia" is WV, not VA.
    """
    words = [word for arg in args for word in arg.replace(",", " ").split()]
    codes: list[str] = []
    unknown: list[str] = []
    i = 0
    while i < len(words):
        for span in range(min(4, len(words) - i), 0, -1):
            code = state_code(" ".join(words[i : i + span]))
            if code:
                codes.append(code)
                i += span
                break
        else:
            unknown.append(words[i])
            i += 1
    return sorted(set(codes)), unknown


def summarise(items: Sequence[str], budget: int = QUOTE_BUDGET) -> str:
    """Items for a reply, HTML-escaped: as many as fit in `budget` characters, then
    "and 4,998 more" ("foo, bar and 4,998 more"), so quoting input never overflows."""
    shown: list[str] = []
    used = 0
    for item in items:
        text = html.escape(truncate(item, QUOTED_WORD_MAX))
        if shown and used + len(text) + 2 > budget:
            break
        shown.append(text)
        used += len(text) + 2
    more = len(items) - len(shown)
    return ", ".join(shown) + (f" and {more:,} more" if more else "")


class Verdict(enum.Enum):
    ANSWER = "answer"
    SLOW_DOWN = "slow down"  # drop it, and tell the user why
    DROP = "drop"  # drop it silently: they were told a moment ago


def command_verdict(
    recent: Sequence[float], last_warned: float | None, now: float, limit: int, window: float
) -> Verdict:
    """Whether to answer a user's command, given when their recent answered ones came."""
    if sum(1 for at in recent if now - at < window) < limit:
        return Verdict.ANSWER
    if last_warned is None or now - last_warned >= SLOW_DOWN_EVERY:
        return Verdict.SLOW_DOWN
    return Verdict.DROP


@dataclass
class _UserLimit:
    answered: deque[float] = field(default_factory=deque)
    warned: float | None = None


class CommandLimiter:
    """Per-user command budget (command_verdict), remembering only what can still matter."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.users: dict[int, _UserLimit] = {}

    def verdict(self, user: int, now: float) -> Verdict:
        state = self.users.setdefault(user, _UserLimit())
        while state.answered and now - state.answered[0] >= self.window:
            state.answered.popleft()
        verdict = command_verdict(state.answered, state.warned, now, self.limit, self.window)
        if verdict is Verdict.ANSWER:
            state.answered.append(now)
        elif verdict is Verdict.SLOW_DOWN:
            state.warned = now
        if len(self.users) > 10_000:  # forget users with nothing left to remember
            self.users = {uid: s for uid, s in self.users.items() if self._matters(s, now)}
        return verdict

    def _matters(self, state: _UserLimit, now: float) -> bool:
        recent = any(now - at < self.window for at in state.answered)
        return recent or (state.warned is not None and now - state.warned < SLOW_DOWN_EVERY)


def _discard(coroutine: Awaitable[Any]) -> None:
    """An update's handling that will never run: closed, so nobody warns it was not awaited."""
    if inspect.iscoroutine(coroutine):
        coroutine.close()


class FairUpdates(BaseUpdateProcessor):
    """How the Application handles updates: chats side by side, each chat's in order.

    One at a time (PTB's default), a flooder's few allowed replies, paced at one a second
    per chat, would hold everyone else up; here they only hold up that chat. A user's
    commands beyond their budget (CommandLimiter) are dropped before they wait for a chat
    or a slot, so a flood costs nothing but the check."""

    def __init__(self, limiter: CommandLimiter) -> None:
        super().__init__(MAX_CONCURRENT_UPDATES)
        self.limiter = limiter
        self.chat_locks: dict[int, asyncio.Lock] = {}
        self.chat_users: Counter[int] = Counter()  # updates holding or awaiting a chat lock
        self.stopping = False  # set by _stop: what still waits for its chat is dropped

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        verdict = Verdict.ANSWER
        chat = 0
        if isinstance(update, Update) and update.effective_message is not None:
            sender = update.effective_user or update.effective_chat
            chat = update.effective_chat.id if update.effective_chat else 0
            if sender is not None:
                verdict = self.limiter.verdict(sender.id, time.monotonic())
        if verdict is Verdict.DROP:
            _discard(coroutine)
            return
        lock = self.chat_locks.setdefault(chat, asyncio.Lock())
        self.chat_users[chat] += 1
        try:
            async with lock:
                if self.stopping:
                    _discard(coroutine)
                elif verdict is Verdict.SLOW_DOWN:
                    _discard(coroutine)
                    await self._slow_down(update)
                else:
                    await coroutine
        finally:
            self.chat_users[chat] -= 1
            if not self.chat_users[chat]:
                del self.chat_users[chat], self.chat_locks[chat]

    async def _slow_down(self, update: Update) -> None:
        log.info("telegram: a user is over the command limit; dropping their commands")
        window = f"{self.limiter.window:g} seconds"
        try:
            await Commands.reply(update, SLOW_DOWN.format(limit=self.limiter.limit, window=window))
        except TelegramError as exc:
            log.warning("telegram: could not ask a user to slow down: %s", exc)

    async def initialize(self) -> None:
        pass  # nothing to set up

    async def shutdown(self) -> None:
        pass  # nothing to release: the Application waits for the updates in progress


def describe_filter(states: Sequence[str] | None) -> str:
    if not states:
        return "every state"
    return ", ".join(states)


def change_from_log(row: dict) -> Change:
    """A change-log object (queries.change_object) back as a Change, for the templates."""
    after, before = row["after"] or {}, row["before"] or {}
    detail = {name: after.get(name) or before.get(name) for name in DETAIL_FIELDS}
    detail["active_date"] = row["active_date"]  # the log's own column, set for every kind
    agency = Agency(
        key=row["key"], name=row["name"], city=row["city"] or "", state=row["state"] or "", **detail
    )
    return Change(
        ChangeKind(row["kind"]), agency, row["before"], row["after"], tuple(row["fields"])
    )


class Commands:
    """The handlers, bound to one store and config."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self.env = make_environment(config.templates_path)
        self.style = message_style()
        self.admins = set(channel_settings(config, CHANNEL).admins)

    def register(self, application: Application) -> None:
        for name in ("start", "subscribe", "unsubscribe", "states", "latest", "stats", "help"):
            application.add_handler(CommandHandler(name, getattr(self, name)))
        application.add_handler(CommandHandler("status", self.status))
        private = filters.ChatType.PRIVATE
        application.add_handler(MessageHandler(private & filters.COMMAND, self.unknown_command))
        application.add_handler(MessageHandler(private & ~filters.COMMAND, self.unknown_text))
        application.add_error_handler(self.on_error)

    # --- helpers ------------------------------------------------------------------------

    @staticmethod
    async def reply(update: Update, text: str) -> None:
        message = update.effective_message
        assert message is not None
        if visible_length(text) <= MAX_REPLY:
            await message.reply_html(text, link_preview_options=NO_PREVIEW)
            return
        # Telegram refuses the whole reply, and cutting HTML could leave a tag open: send
        # the readable text, cut to fit. Replies that quote input summarise it before this.
        log.warning("telegram: a reply of %d characters was cut to fit", visible_length(text))
        await message.reply_text(
            visible_text(text)[: MAX_REPLY - len(ELLIPSIS)] + ELLIPSIS,
            link_preview_options=NO_PREVIEW,
        )

    @staticmethod
    async def may_change(update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
        """Anyone in a private chat; in a group, only its administrators."""
        chat, message, user = update.effective_chat, update.effective_message, update.effective_user
        assert chat is not None and message is not None
        if chat.type == ChatType.PRIVATE:
            return True
        if message.sender_chat is not None and message.sender_chat.id == chat.id:
            return True  # an anonymous administrator posts as the group itself
        if user is None:
            return False
        member = await context.bot.get_chat_member(chat.id, user.id)
        return member.status in ADMIN_STATUSES

    async def refuse_unless_allowed(
        self, update: Update, context: ContextTypes.DEFAULT_TYPE
    ) -> bool:
        if await self.may_change(update, context):
            return False
        await self.reply(update, "Only an administrator of this group can change its alerts.")
        return True

    def subscription(self, update: Update) -> Subscriber | None:
        assert update.effective_chat is not None
        subscriber = self.store.subscribers.get(CHANNEL, str(update.effective_chat.id))
        return subscriber if subscriber and subscriber.active else None

    def subscribe_chat(self, update: Update, states: list[str] | None) -> None:
        chat = update.effective_chat
        assert chat is not None
        title = chat.title or chat.username or chat.full_name
        self.store.subscribers.subscribe(
            CHANNEL, str(chat.id), states=states, chat_type=chat.type, title=title
        )

    # --- commands -----------------------------------------------------------------------

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        current = self.subscription(update)
        if current:
            await self.reply(
                update,
                f"You are already subscribed ({html.escape(describe_filter(current.states))})."
                "\n\n" + HELP,
            )
            return
        if await self.refuse_unless_allowed(update, context):
            return
        self.subscribe_chat(update, None)
        await self.reply(update, "Subscribed to alerts for every state.\n\n" + HELP)

    async def subscribe(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        states, unknown = parse_states(context.args or [])
        if unknown:
            await self.reply(
                update,
                f"Not a US state: {summarise(unknown)}. "
                "Use codes or names, e.g. <code>/subscribe MN WI</code>.",
            )
            return
        if await self.refuse_unless_allowed(update, context):
            return
        self.subscribe_chat(update, states or None)
        what = ", ".join(states) if states else "every state"
        await self.reply(update, f"Subscribed to alerts for {html.escape(what)}.")

    async def unsubscribe(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if await self.refuse_unless_allowed(update, context):
            return
        assert update.effective_chat is not None
        chat_id = str(update.effective_chat.id)
        if self.store.subscribers.deactivate(CHANNEL, chat_id, "unsubscribed"):
            await self.reply(update, "Unsubscribed. /start or /subscribe brings alerts back.")
        else:
            await self.reply(update, "You were not subscribed.")

    async def states(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        current = self.subscription(update)
        if not current:
            await self.reply(update, "Not subscribed. Send /start or /subscribe MN WI.")
            return
        await self.reply(
            update, f"You get alerts for {html.escape(describe_filter(current.states))}."
        )

    async def latest(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        current = self.subscription(update)
        states = list(current.states or ()) if current else []
        rows = query_changes(self.store.db, ChangeFilter(states=states, limit=LATEST_COUNT))
        if not rows:
            await self.reply(update, "No changes recorded yet.")
            return
        lines = [
            f"{html.escape(row['detected_at'][:10])} · "
            + render_change(self.env, self.style, change_from_log(row))
            for row in reversed(rows)
        ]
        for part in split_text("\n\n".join(lines), self.style.max_length, self.style.measure):
            await self.reply(update, part)

    async def stats(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        total = self.store.agencies.active_count()
        by_state = agencies_by_state(self.store.db)
        since = (datetime.now(UTC) - timedelta(days=RECENT_DAYS)).date().isoformat()
        recent = len(
            query_changes(self.store.db, ChangeFilter(since=since, kinds=[ChangeKind.ADDED]))
        )
        top = ", ".join(
            f"{html.escape(state)} {count:,}" for state, count in by_state[:STATS_TOP_STATES]
        )
        more = len(by_state) - STATS_TOP_STATES
        await self.reply(
            update,
            f"<b>{total:,}</b> active partnerships in {len(by_state)} states.\n"
            f"Most: {top}{f' and {more} more states' if more > 0 else ''}.\n"
            f"New in the last {RECENT_DAYS} days: <b>{recent:,}</b>.",
        )

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.reply(update, HELP)

    async def status(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, user = update.effective_chat, update.effective_user
        allowed = (chat is not None and chat.id in self.admins) or (
            user is not None and user.id in self.admins
        )
        if not allowed:
            await self.reply(update, "/status is for the maintainers of this bot.")
            return
        report = read_status(self.store, polls=3)
        lines = [f"Agencies tracked: {report.agencies:,}"]
        lines.append(f"Failed or suspect polls in a row: {report.bad_streak}")
        lines.append("Last polls:")
        for poll in report.polls:
            detail = (
                poll["error"] or f"+{poll[ChangeKind.ADDED] or 0} -{poll[ChangeKind.REMOVED] or 0}"
            )
            lines.append(f"  {poll['started_at']} {poll['outcome']}: {detail}")
        lines.append("Deliveries:")
        for channel, by_status in sorted(report.deliveries.items()):
            counts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
            lines.append(f"  {channel}: {counts}")
        await self.reply(update, f"<pre>{html.escape(chr(10).join(lines))}</pre>")

    async def unknown_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.reply(update, "I don't know that command.\n\n" + HELP)

    async def unknown_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.reply(
            update,
            "I only understand commands. Try <code>/subscribe MN WI</code> or /help.",
        )

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram: a command failed: %s", context.error, exc_info=context.error)


def build_application(config: Config, store: Store, bot: ExtBot[None]) -> Application:
    settings = channel_settings(config, CHANNEL)
    limiter = CommandLimiter(settings.commands_per_user, settings.command_window)
    application = ApplicationBuilder().bot(bot).concurrent_updates(FairUpdates(limiter)).build()
    Commands(config, store).register(application)
    return application


async def _start(application: Application) -> None:
    await application.bot.set_my_commands([BotCommand(n, d) for n, d in COMMANDS])
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling(
        timeout=timedelta(seconds=LONG_POLL_SECONDS), allowed_updates=[Update.MESSAGE]
    )


async def _stop(application: Application) -> None:
    # Application.stop() waits for every update taken in: a queue of commands would hold
    # the shutdown for minutes. Those still waiting for their chat are dropped instead.
    if isinstance(application.update_processor, FairUpdates):
        application.update_processor.stopping = True
    if application.updater is not None and application.updater.running:
        await application.updater.stop()
    if application.running:
        await application.stop()


async def listen(config: Config, store: Store, stop: asyncio.Event, bot: ExtBot[None]) -> None:
    """Answer commands until `stop` is set; an unreachable Bot API is retried, never fatal."""
    application = build_application(config, store, bot)
    delay = RETRY_FIRST
    while not stop.is_set():
        listening = False
        try:
            async with application:  # initialize … shutdown, whatever happens inside
                try:
                    await _start(application)
                    listening = True
                    log.info("telegram: listening for commands as @%s", application.bot.username)
                    await stop.wait()
                finally:
                    await _stop(application)  # shutdown refuses a running Application
            return
        except Exception as exc:
            if listening:  # stopping failed: nothing left to retry
                raise
            reason = f"the Bot API rejected {TOKEN_ENV}" if isinstance(exc, InvalidToken) else exc
            log.warning("telegram: cannot listen for commands (%s); retry in %.0fs", reason, delay)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, RETRY_MAX)
