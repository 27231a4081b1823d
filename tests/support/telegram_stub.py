"""A Telegram Bot API stub: a real HTTP server on 127.0.0.1 speaking the real wire format.

python-telegram-bot talks to it unchanged (`base_url=stub.base_url`). It answers
getMe, deleteWebhook, getUpdates (offsets, long-poll timeout), sendMessage,
sendPhoto (multipart), setMyCommands/getMyCommands, getChatMember and
getChatAdministrators; records every call; plays programmable faults (429 with
parameters.retry_after, 403, 400 chat not found, migrate_to_chat_id); can quote each
request in its error answers, as a careless proxy or self-hosted API does
(`echo_requests`), or drip its answers to some chats a byte at a time (`drip_to`); and, with
`enforce_limits`, answers 429 the way Telegram would when a bot sends faster than
30 messages a second overall, 1 a second to a private chat or 20 a minute to a group,
counting every 429 it had to give (`rate_limited`).

    stub = TelegramStub(enforce_limits=True).start()
    ... Bot(token=stub.token, base_url=stub.base_url) ...
    stub.stop()
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus

from tests.support.http import StubHandler, StubServer

BOT_ID = 999000111
BOT_USERNAME = "ringwatch_test_bot"
DEFAULT_TOKEN = "123456:TEST-token_for-the-stub"
SEND_METHODS = ("sendmessage", "sendphoto")


@dataclass(frozen=True)
class Limits:
    """Telegram's documented limits, with `slack` seconds of tolerance for clock jitter."""

    per_second: int = 30
    private_interval: float = 1.0
    group_per_minute: int = 20
    slack: float = 0.05


@dataclass(frozen=True)
class Fault:
    """One programmed error answer."""

    status: int
    description: str
    retry_after: int | None = None
    migrate_to_chat_id: int | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        parameters = {
            key: value
            for key, value in (
                ("retry_after", self.retry_after),
                ("migrate_to_chat_id", self.migrate_to_chat_id),
            )
            if value is not None
        }
        if parameters:
            body["parameters"] = parameters
        return body


def flood(retry_after: int) -> Fault:
    return Fault(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)


BLOCKED = Fault(403, "Forbidden: bot was blocked by the user")
CHAT_NOT_FOUND = Fault(400, "Bad Request: chat not found")


def echo_request(method: str, path: str, headers: Any, body: bytes) -> str:
    """The request as a careless upstream quotes it in an error: verbatim, lower-cased
    (as python-telegram-bot re-cases descriptions), percent- and form-encoded."""
    lines = "; ".join(f"{key}: {value}" for key, value in headers.items())
    raw = f"{method} {path} {lines} {body.decode(errors='replace')}"
    return f"(request: {raw} | {raw.lower()} | {quote(raw, safe='')} | {quote_plus(raw)})"


@dataclass
class Call:
    method: str  # as sent, e.g. "sendMessage"
    params: dict[str, str]  # raw form values (PTB JSON-encodes non-strings)
    at: float  # time.monotonic() when it arrived
    status: int = 200  # what the stub answered
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Sent:
    chat_id: str
    text: str  # text or caption
    message_id: int
    at: float
    params: dict[str, str]
    photo: bytes | None = None
    uploaded: bool = False  # the photo came as a file, not as the file_id of an earlier one


class TelegramStub(StubServer):
    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        enforce_limits: bool = False,
        limits: Limits = Limits(),
    ) -> None:
        self.token = token
        self.enforce_limits = enforce_limits
        self.limits = limits
        self.send_delay = 0.0  # seconds before answering a send (in-flight messages)
        self.echo_requests = False  # error answers quote the request (URL with the token)
        self.drip_to: set[str] = set()  # chats whose sends are answered a byte a second
        self.calls: list[Call] = []
        self.sent: list[Sent] = []
        self.photos: dict[str, bytes] = {}  # file_id → the uploaded file
        self.commands: list[dict[str, str]] = []
        self.rate_limited = 0  # 429s given because a limit was exceeded
        self.chat_types: dict[str, str] = {}
        self.admins: dict[str, set[int]] = defaultdict(set)
        self.blocked: set[str] = set()  # chats that answer 403 forever
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)  # chat id or "*"
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._recent_sends: deque[float] = deque()
        self._chat_sends: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Condition()
        self._stopping = False
        super().__init__(self._handler_class())

    # --- lifecycle --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What python-telegram-bot takes as base_url (it appends token and method)."""
        return super().base_url + "/bot"

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        super().stop()

    # --- programming it ---------------------------------------------------------------

    def user_says(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        chat_type: str | None = None,
        title: str = "Test group",
        sender_chat_id: int | None = None,
        location: tuple[float, float] | None = None,
    ) -> int:
        """Queue an incoming message for getUpdates; a leading /command gets its entity.
        With `location` (latitude, longitude) it is a shared location instead of text."""
        chat_type = chat_type or ("private" if chat_id > 0 else "supergroup")
        self.chat_types[str(chat_id)] = chat_type
        user_id = user_id if user_id is not None else chat_id
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = f"User{chat_id}"
        else:
            chat["title"] = title
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"},
            "text": text,
        }
        if location is not None:
            del message["text"]
            message["location"] = {"latitude": location[0], "longitude": location[1]}
        if sender_chat_id is not None:
            message["sender_chat"] = {"id": sender_chat_id, "type": chat_type, "title": title}
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        with self._lock:
            update_id = next(self._update_ids)
            self._updates.append({"update_id": update_id, "message": message})
            self._lock.notify_all()
        return update_id

    def fail_next(self, chat_id: int | str, fault: Fault, times: int = 1) -> None:
        """The next `times` sends to `chat_id` ("*": to anyone) get this answer."""
        with self._lock:
            self.faults[str(chat_id)].extend([fault] * times)

    # --- reading what happened ----------------------------------------------------------

    def texts(self, chat_id: int | str) -> list[str]:
        """Every text (or caption) delivered to one chat, in order."""
        with self._lock:
            return [s.text for s in self.sent if s.chat_id == str(chat_id)]

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method.lower() == method.lower()]

    def pending_updates(self) -> int:
        with self._lock:
            return len(self._updates)

    # --- the API ------------------------------------------------------------------------

    def _chat(self, chat_id: str) -> dict[str, Any]:
        if chat_id.startswith("@"):
            return {
                "id": -1000000000000 - sum(map(ord, chat_id)),
                "type": "channel",
                "title": chat_id[1:],
                "username": chat_id[1:],
            }
        chat_type = self.chat_types.get(chat_id) or (
            "private" if int(chat_id) > 0 else "supergroup"
        )
        return {"id": int(chat_id), "type": chat_type}

    def _over_limit(self, chat_id: str, now: float) -> int | None:
        """Seconds to wait if this send breaks one of Telegram's limits (lock held)."""
        limits = self.limits
        window = 1.0 - limits.slack
        while self._recent_sends and now - self._recent_sends[0] >= window:
            self._recent_sends.popleft()
        if len(self._recent_sends) >= limits.per_second:
            return 1
        chat = self._chat_sends[chat_id]
        if self._chat(chat_id)["type"] == "private":
            if chat and now - chat[-1] < limits.private_interval - limits.slack:
                return 1
        else:
            while chat and now - chat[0] >= 60.0 - limits.slack:
                chat.popleft()
            if len(chat) >= limits.group_per_minute:
                return max(1, int(60 - (now - chat[0])) + 1)
        return None

    def _send(self, call: Call) -> tuple[int, dict[str, Any]]:
        chat_id = call.params.get("chat_id", "")
        if not chat_id:
            return 400, Fault(400, "Bad Request: chat_id is empty").body()
        if self.send_delay:
            time.sleep(self.send_delay)
        with self._lock:
            now = time.monotonic()
            fault = None
            for key in (chat_id, "*"):
                if self.faults[key]:
                    fault = self.faults[key].popleft()
                    break
            if fault is None and chat_id in self.blocked:
                fault = BLOCKED
            if fault is None and self.enforce_limits:
                wait = self._over_limit(chat_id, now)
                if wait is not None:
                    self.rate_limited += 1
                    fault = flood(wait)
            if fault is not None:
                return fault.status, fault.body()
            self._recent_sends.append(now)
            self._chat_sends[chat_id].append(now)
            message_id = next(self._message_ids)
            text = call.params.get("text", call.params.get("caption", ""))
            photo = call.files.get("photo")
            uploaded = photo is not None
            if photo is None and "photo" in call.params:  # an earlier upload's file_id
                photo = self.photos.get(call.params["photo"])
                if photo is None:
                    fault = Fault(400, "Bad Request: wrong file identifier/HTTP URL specified")
                    return fault.status, fault.body()
            if uploaded:
                self.photos[f"photo{message_id}"] = photo
            self.sent.append(Sent(chat_id, text, message_id, now, call.params, photo, uploaded))
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": self._chat(chat_id),
        }
        if photo is not None:
            message["photo"] = [
                {
                    "file_id": f"photo{message_id}",
                    "file_unique_id": f"u{message_id}",
                    # A PNG's header holds its size (IHDR: width, height at bytes 16-24).
                    "width": int.from_bytes(photo[16:20]),
                    "height": int.from_bytes(photo[20:24]),
                }
            ]
            if text:
                message["caption"] = text
        else:
            message["text"] = text
        return 200, {"ok": True, "result": message}

    def _get_updates(self, params: dict[str, str]) -> dict[str, Any]:
        offset = int(params.get("offset", "0") or 0)
        timeout = float(params.get("timeout", "0") or 0)
        limit = int(params.get("limit", "100") or 100)
        deadline = time.monotonic() + timeout
        with self._lock:
            if offset:  # confirms every update before it, as Telegram does
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            return {"ok": True, "result": self._updates[:limit]}

    def _user(self, user_id: int) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}

    def _member(self, chat_id: str, user_id: int) -> dict[str, Any]:
        if user_id in self.admins[chat_id]:
            return {"status": "creator", "user": self._user(user_id), "is_anonymous": False}
        return {"status": "member", "user": self._user(user_id)}

    def handle(self, method: str, call: Call) -> tuple[int, dict[str, Any]]:
        name = method.lower()
        params = call.params
        if name in SEND_METHODS:
            return self._send(call)
        if name == "getme":
            return 200, {
                "ok": True,
                "result": {
                    "id": BOT_ID,
                    "is_bot": True,
                    "first_name": "ringwatch",
                    "username": BOT_USERNAME,
                },
            }
        if name in ("deletewebhook", "close", "logout"):
            return 200, {"ok": True, "result": True}
        if name == "getupdates":
            return 200, self._get_updates(params)
        if name == "setmycommands":
            self.commands = json.loads(params.get("commands", "[]"))
            return 200, {"ok": True, "result": True}
        if name == "getmycommands":
            return 200, {"ok": True, "result": self.commands}
        if name == "getchatmember":
            member = self._member(params["chat_id"], int(params["user_id"]))
            return 200, {"ok": True, "result": member}
        if name == "getchatadministrators":
            chat_id = params["chat_id"]
            members = [self._member(chat_id, user) for user in sorted(self.admins[chat_id])]
            return 200, {"ok": True, "result": members}
        return 404, Fault(404, "Not Found: method not found").body()

    def _handler_class(self) -> type[StubHandler]:
        stub = self

        class Handler(StubHandler):
            def do_POST(self) -> None:
                body = self.read_body()
                _, _, rest = self.path.partition("/bot")
                token, _, method = rest.partition("/")
                params, files = parse_body(self.headers.get("Content-Type", ""), body)
                call = Call(method, params, time.monotonic(), files=files)
                if token != stub.token:
                    status, answer = 401, Fault(401, "Unauthorized").body()
                else:
                    status, answer = stub.handle(method, call)
                call.status = status
                with stub._lock:
                    stub.calls.append(call)
                if status != 200 and stub.echo_requests:
                    echo = echo_request(self.command, self.path, self.headers, body)
                    answer["description"] += " " + echo
                drip = call.params.get("chat_id") in stub.drip_to
                self.send_json(status, answer, drip=drip)

            do_GET = do_POST

        return Handler


def parse_body(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """Form or multipart body → (fields, files), as PTB sends them."""
    if content_type.startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        params: dict[str, str] = {}
        files: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename() is not None:
                files[name] = payload
            else:
                params[name] = payload.decode()
        return params, files
    return dict(parse_qsl(body.decode(), keep_blank_values=True)), {}
