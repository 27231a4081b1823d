"""The SQLite state: schema and migrations, one transaction per poll, the outbox."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
import sqlite_utils

from bot.diff import Diff
from bot.models import (
    Change,
    MessageKind,
    Origin,
    OutboxMessage,
    OutboxStatus,
    PollOutcome,
)
from bot.queries import ChangeFilter, query_changes, read_status
from bot.store import Store
from bot.store.polls import PollRecord
from bot.store.schema import MIGRATIONS, SCHEMA_STEPS, SCHEMA_VERSION, database_problem, migrate
from bot.store.times import prune_before
from tests.support.agencies import make_agency
from tests.support.outbox import as_stored_now, outbox

CRYSTAL = make_agency()


@pytest.fixture
def store(tmp_path):
    opened = Store.open(tmp_path / "state" / "ringwatch.db")
    yield opened
    opened.close()


def polled(outcome: PollOutcome) -> PollRecord:
    """A live poll that ended with `outcome`."""
    return PollRecord("2026-11-29T16:00:00Z", "https://ring.example/map.kml", Origin.LIVE, 0,
                      outcome=outcome)  # fmt: skip


def count(store: Store, table: str) -> int:
    return store.db.execute(f"select count(*) from {table}").fetchone()[0]


def test_a_new_database_is_at_the_current_schema_in_wal_mode(store):
    assert store.schema_version == SCHEMA_VERSION
    assert store.db.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("pragma busy_timeout").fetchone()[0] >= 5000
    assert {"agencies", "polls", "changes", "outbox", "subscribers"} <= set(store.db.table_names())


def test_a_version_1_database_is_migrated_keeping_its_rows(tmp_path):
    path = tmp_path / "ringwatch.db"
    old = sqlite_utils.Database(path)
    SCHEMA_STEPS[0](old)
    old["meta"].insert({"key": "schema_version", "value": "1"}, pk="key")
    old["agencies"].insert({**CRYSTAL.as_row(), "extra": "{}", "active": 1, "missing_polls": 0})
    poll_id = old["polls"].insert({"started_at": "2020-06-03T00:00:00Z", "outcome": "ok"}).last_pk
    old["changes"].insert(
        {"poll_id": poll_id, "kind": "added", "key": CRYSTAL.key, "name": CRYSTAL.name,
         "state": "MN", "detected_at": "2020-06-03T00:00:00Z"}
    )  # fmt: skip
    old.close()

    store = Store.open(path)

    assert store.schema_version == SCHEMA_VERSION
    assert list(store.agencies.active()) == [CRYSTAL.key]
    assert [row["kind"] for row in store.db.query("select kind from changes")] == ["added"]
    assert "subscribers" in store.db.table_names()
    store.close()
    assert Store.open(path).schema_version == SCHEMA_VERSION  # opening again changes nothing


STEP_NAMES = [step.__name__ for step in SCHEMA_STEPS]
RELEASE_DUMP = Path(__file__).parent / "data" / "release-0.1.0.sql"


def applied_steps(path: Path) -> list[str]:
    db = sqlite_utils.Database(path)
    names = [step.name for step in MIGRATIONS.applied(db)]
    db.close()
    return names


def release_0_1_0(path: Path) -> None:
    """ringwatch 0.1.0's database (schema_version 2 in `meta`), from its .dump."""
    with sqlite3.connect(path) as db:
        db.executescript(RELEASE_DUMP.read_text(encoding="utf-8"))


def current_main_before_named_steps(path: Path) -> None:
    """What ringwatch wrote before sqlite-utils recorded the steps: all six steps run, the
    version counted in `meta`, and a row in every table (a change with its uuid)."""
    db = sqlite_utils.Database(path)
    with db.atomic():  # as Store.migrate ran them: committed together
        for step in SCHEMA_STEPS[:6]:
            step(db)
        db["meta"].insert({"key": "schema_version", "value": "6"}, pk="key")
        db["agencies"].insert({**CRYSTAL.as_row(), "extra": "{}", "active": 1, "missing_polls": 0})
        poll_id = (
            db["polls"]
            .insert(
                {
                    "started_at": "2026-11-01T00:00:00Z",
                    "outcome": "ok",
                    "snapshot": "ab12",
                    "warning": "listed twice",
                }
            )
            .last_pk
        )
        db["changes"].insert(
            {
                "poll_id": poll_id,
                "kind": "added",
                "key": CRYSTAL.key,
                "name": CRYSTAL.name,
                "uuid": "5f0c6e1e-uuid-of-crystal",
                "detected_at": "2026-11-01T00:00:00Z",
            }
        )
        db["churn"].insert(
            {"poll_id": poll_id, "field": "video_requests", "agencies": 1, "data": b"x"}
        )
        db["snapshots"].insert({"sha256": "ab12", "bytes": 10, "polls": 1}, pk="sha256")
        db["outbox"].insert(
            {
                "channel": "telegram",
                "recipient": "42",
                "kind": "alert",
                "dedupe_key": "d1",
                "text": "New partnership",
                "status": "sent",
                "attempts": 1,
                "failing_since": None,
            }
        )
        db["subscribers"].insert({"channel": "telegram", "chat_id": "42", "active": 1})
    db.close()  # fmt: skip


def every_row(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table, in the columns it has (sqlite-utils' own table aside)."""
    db = sqlite_utils.Database(path)
    rows = {table.name: sorted(db.execute(f"select * from [{table.name}]").fetchall(), key=repr)
            for table in db.tables if table.name != MIGRATIONS.migrations_table}  # fmt: skip
    columns = {table.name: [c.name for c in table.columns] for table in db.tables}
    db.close()
    return {table: [(columns[table], row) for row in table_rows]
            for table, table_rows in rows.items()}  # fmt: skip


@pytest.mark.parametrize(
    ("write_old_database", "steps_it_had"),
    [(release_0_1_0, 2), (current_main_before_named_steps, 6)],
)
def test_an_older_database_records_the_steps_it_has_runs_the_rest_and_loses_nothing(
    tmp_path, write_old_database, steps_it_had
):
    path = tmp_path / "ringwatch.db"
    write_old_database(path)
    before = every_row(path)
    assert all(before.values())  # a row in every table, to lose

    Store.open(path).close()

    assert applied_steps(path) == STEP_NAMES  # recorded in order, each once
    after = every_row(path)
    for table, rows in before.items():  # every old column of every row, unchanged
        if table == "meta":  # the version it counted moves on (see Store.migrate)
            continue
        old_columns = rows[0][0] if rows else []
        kept = [tuple(dict(zip(columns, row, strict=True))[c] for c in old_columns)
                for columns, row in after[table]]  # fmt: skip
        expected = [tuple(as_stored_now(table, c, v) for c, v in zip(old_columns, row, strict=True))
                    for _, row in rows]  # fmt: skip
        assert sorted(kept, key=repr) == sorted(expected, key=repr), table
    if steps_it_had == SCHEMA_VERSION:  # nothing re-ran: same uuid, same install id
        assert after["changes"] == before["changes"]
        assert after["meta"] == before["meta"]


def test_a_new_database_runs_every_step_and_a_second_migrate_changes_nothing(tmp_path):
    path = tmp_path / "ringwatch.db"
    store = Store.open(path)
    assert applied_steps(path) == STEP_NAMES
    schema = store.db.execute("select sql from sqlite_master order by name").fetchall()
    writes = store.db.conn.total_changes

    migrate(store.db)

    assert store.db.conn.total_changes == writes
    assert store.db.execute("select sql from sqlite_master order by name").fetchall() == schema
    store.close()
    assert applied_steps(path) == STEP_NAMES


def test_a_database_from_a_newer_ringwatch_is_refused(tmp_path):
    path = tmp_path / "ringwatch.db"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "insert into _sqlite_migrations (migration_set, name, applied_at) "
            "values ('ringwatch', 'add_a_table_from_the_future', '2027-01-01')"
        )

    with pytest.raises(sqlite3.DatabaseError) as refused:
        Store.open(path)

    assert str(database_problem(path, refused.value)) == (
        f"database {path} was written by a newer ringwatch (schema steps "
        "add_a_table_from_the_future): upgrade ringwatch (nothing was written)"
    )


def test_a_pre_named_steps_database_with_a_higher_version_is_refused(tmp_path):
    path = tmp_path / "ringwatch.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table meta (key text primary key, value text)")
        conn.execute("insert into meta values ('schema_version', '99')")

    with pytest.raises(
        sqlite3.DatabaseError, match=r"newer than this ringwatch \(up to version 99\)"
    ):
        Store.open(path)


def test_a_poll_is_committed_whole_or_not_at_all(store):
    def plan(poll_id, numbered):
        raise RuntimeError("rendering failed")

    diff = Diff(added=[CRYSTAL])
    with pytest.raises(RuntimeError):
        store.commit_poll(polled(PollOutcome.OK), diff, [Change("added", CRYSTAL)], plan)

    assert [count(store, t) for t in ("polls", "agencies", "changes", "outbox")] == [0, 0, 0, 0]


def test_a_committed_poll_links_changes_and_messages(store):
    def plan(poll_id, numbered):
        return [
            OutboxMessage("console", "stdout", "alert", f"change:{cid}", "hi", change_ids=(cid,))
            for cid, _ in numbered
        ]

    poll_id, numbered = store.commit_poll(
        polled(PollOutcome.OK), Diff(added=[CRYSTAL]), [Change("added", CRYSTAL)], plan
    )

    ((change_id, _),) = numbered
    row = outbox(store)[0]
    assert (row["poll_id"], row["change_ids"], row["status"]) == (
        poll_id,
        f"[{change_id}]",
        "pending",
    )
    assert store.agencies.active()[CRYSTAL.key].name == CRYSTAL.name


def test_a_removed_agency_is_kept_with_its_end_date(store):
    store.commit_poll(polled(PollOutcome.OK), Diff(added=[CRYSTAL]), [], lambda *_: [])
    ended = replace(polled(PollOutcome.OK), finished_at="2020-07-01T00:00:00Z")
    store.commit_poll(ended, Diff(removed=[CRYSTAL]), [], lambda *_: [])

    assert store.agencies.active() == {}
    row = next(store.db.query("select active, ended_at from agencies"))
    assert row == {"active": 0, "ended_at": "2020-07-01T00:00:00Z"}


def test_release_stale_returns_in_flight_rows_to_the_queue(store):
    store.outbox.queue(None, [OutboxMessage("console", "stdout", "alert", "g", "hi")])
    assert store.outbox.claim(1)
    assert not store.outbox.claim(1)  # claimed once only

    assert store.outbox.release_stale() == 1
    assert [row["id"] for row in store.outbox.due("console")] == [1]


def test_bad_streak_counts_failures_since_the_last_good_poll(store):
    for outcome in ("baseline", "failed", "ok", "failed", "suspect"):
        store.record_poll(polled(PollOutcome(outcome)))

    assert store.polls.bad_streak() == 2


def test_the_status_read_model_is_one_read_of_polls_and_outbox(store):
    for outcome in (PollOutcome.OK, PollOutcome.FAILED, PollOutcome.SUSPECT):
        store.record_poll(polled(outcome))
    store.outbox.queue(None, [
        OutboxMessage("console", "stdout", MessageKind.ALERT, f"g{n}", "hi") for n in range(3)
    ])  # fmt: skip
    first, second, _ = (row["id"] for row in store.outbox.due("console"))
    store.outbox.mark_failed(first, "older")
    store.outbox.mark_failed(second, "newer")

    report = read_status(store, polls=2, failures=5)

    assert report.bad_streak == 2
    assert [p["outcome"] for p in report.polls] == [PollOutcome.SUSPECT, PollOutcome.FAILED]
    assert report.deliveries == {"console": {OutboxStatus.FAILED: 2, OutboxStatus.PENDING: 1}}
    assert [f.last_error for f in report.failures] == ["newer", "older"]
    assert set(report.oldest_waiting) == {"console"}


def test_readonly_open_of_a_missing_database_fails_and_creates_nothing(tmp_path):
    """No command may answer from an empty stand-in: a read needs the database (the CLI
    says where it is missing first), a dry run asks for Store.empty() itself."""
    path = tmp_path / "state" / "ringwatch.db"

    with pytest.raises(sqlite3.OperationalError):
        Store.open(path, readonly=True)

    assert not (tmp_path / "state").exists()


def test_a_bug_is_no_database_problem(tmp_path):
    """Only a state of the file or its disk becomes a one-line message; a bug still raises."""
    path = tmp_path / "ringwatch.db"
    with pytest.raises(sqlite3.OperationalError) as bug:
        Store.open(path).db.execute("select nothing from nowhere")

    assert database_problem(path, bug.value) is None


def test_a_version_2_database_is_migrated_keeping_its_rows(tmp_path):
    path = tmp_path / "ringwatch.db"
    old = sqlite_utils.Database(path)
    for migration in SCHEMA_STEPS[:2]:
        migration(old)
    old["meta"].insert({"key": "schema_version", "value": "2"}, pk="key")
    old["agencies"].insert({**CRYSTAL.as_row(), "extra": "{}", "active": 1, "missing_polls": 0})
    poll_id = old["polls"].insert({"started_at": "2024-06-03T00:00:00Z", "outcome": "ok"}).last_pk
    old["changes"].insert(
        {"poll_id": poll_id, "kind": "changed", "key": CRYSTAL.key, "name": CRYSTAL.name,
         "state": "MN", "fields": '["video_requests"]', "before": '{"video_requests": 1}',
         "after": '{"video_requests": 2}', "alert": 0, "detected_at": "2024-06-03T00:00:00Z"}
    )  # fmt: skip
    old["subscribers"].insert({"channel": "telegram", "chat_id": "42", "active": 1})
    old.close()

    store = Store.open(path)

    assert store.schema_version == SCHEMA_VERSION
    assert [p["warning"] for p in store.db.query("select warning from polls")] == [None]
    assert count(store, "churn") == 0
    (row,) = query_changes(store.db, ChangeFilter(kinds=("changed",)))
    assert (row["key"], row["before"], row["after"]) == (
        CRYSTAL.key, {"video_requests": 1}, {"video_requests": 2},
    )  # fmt: skip
    assert [s.chat_id for s in store.subscribers.active("telegram")] == ["42"]
    # Its first prune switches it to incremental vacuum (a VACUUM) and keeps the change log.
    assert store.db.execute("pragma auto_vacuum").fetchone()[0] == 0
    store.retention.prune(prune_before(0))
    assert store.db.execute("pragma auto_vacuum").fetchone()[0] == 2
    assert len(query_changes(store.db, ChangeFilter(kinds=("changed",)))) == 1
    store.close()


def test_a_retry_is_due_from_its_time_rounded_up_to_the_second_never_early(store):
    store.outbox.queue(None, [OutboxMessage("console", "stdout", MessageKind.ALERT, "g", "hi")])
    store.outbox.mark_retry(1, at=1_795_910_400.2, error="reset", failing_at=1_795_910_399.7)

    assert store.outbox.due("console", now=1_795_910_400.9) == []
    assert store.outbox.first_waiting("console", now=1_795_910_400.9) == {"stdout": 1}
    (row,) = store.outbox.due("console", now=1_795_910_401.0)
    assert (row["next_attempt_at"], row["failing_since"]) == (
        "2026-11-29T00:00:01Z",
        "2026-11-28T23:59:59Z",
    )
    assert store.outbox.failing_since(1) == 1_795_910_399.0
    assert store.outbox.first_waiting("console", now=1_795_910_401.0) == {}
