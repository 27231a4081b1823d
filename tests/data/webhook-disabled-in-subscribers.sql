PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE IF NOT EXISTS "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);
INSERT INTO _sqlite_migrations VALUES(1,'ringwatch','create_agencies_polls_changes_outbox','2026-12-06 20:50:07.333941+00:00');
INSERT INTO _sqlite_migrations VALUES(2,'ringwatch','add_subscribers_and_recent_changes_view','2026-12-06 20:50:07.334332+00:00');
INSERT INTO _sqlite_migrations VALUES(3,'ringwatch','add_snapshots_and_poll_origin','2026-12-06 20:50:07.335578+00:00');
INSERT INTO _sqlite_migrations VALUES(4,'ringwatch','add_outbox_failing_since','2026-12-06 20:50:07.335866+00:00');
INSERT INTO _sqlite_migrations VALUES(5,'ringwatch','add_poll_warning_missing_and_churn','2026-12-06 20:50:07.353095+00:00');
INSERT INTO _sqlite_migrations VALUES(6,'ringwatch','add_change_uuids_and_install_id','2026-12-06 20:50:07.353915+00:00');
INSERT INTO _sqlite_migrations VALUES(7,'ringwatch','outbox_times_as_iso_text','2026-12-06 20:50:07.366314+00:00');
CREATE TABLE IF NOT EXISTS "agencies" (
   "key" TEXT PRIMARY KEY,
   "name" TEXT NOT NULL,
   "city" TEXT,
   "state" TEXT,
   "active_date" TEXT,
   "video_requests" INTEGER,
   "profile_url" TEXT,
   "lat" REAL,
   "lon" REAL,
   "extra" TEXT,
   "raw_hash" TEXT,
   "active" INTEGER NOT NULL DEFAULT 1,
   "missing_polls" INTEGER NOT NULL DEFAULT 0,
   "first_seen" TEXT,
   "updated_at" TEXT,
   "ended_at" TEXT,
   "renamed_to" TEXT
);
CREATE TABLE IF NOT EXISTS "polls" (
   "id" INTEGER PRIMARY KEY,
   "started_at" TEXT,
   "finished_at" TEXT,
   "outcome" TEXT,
   "url" TEXT,
   "http_status" INTEGER,
   "bytes" INTEGER,
   "content_hash" TEXT,
   "etag" TEXT,
   "last_modified" TEXT,
   "records" INTEGER,
   "added" INTEGER,
   "removed" INTEGER,
   "renamed" INTEGER,
   "changed" INTEGER,
   "duration_ms" INTEGER,
   "error" TEXT
, "snapshot" TEXT, "origin" TEXT NOT NULL DEFAULT 'live', "forced" INTEGER, "warning" TEXT, "missing" INTEGER);
CREATE TABLE IF NOT EXISTS "changes" (
   "id" INTEGER PRIMARY KEY,
   "poll_id" INTEGER REFERENCES "polls"("id"),
   "detected_at" TEXT,
   "kind" TEXT,
   "key" TEXT,
   "name" TEXT,
   "city" TEXT,
   "state" TEXT,
   "active_date" TEXT,
   "fields" TEXT,
   "before" TEXT,
   "after" TEXT,
   "alert" INTEGER
, "snapshot" TEXT, "before_snapshot" TEXT, "origin" TEXT NOT NULL DEFAULT 'live', "uuid" TEXT);
CREATE TABLE IF NOT EXISTS "subscribers" (
   "channel" TEXT,
   "chat_id" TEXT,
   "chat_type" TEXT,
   "title" TEXT,
   "states" TEXT,
   "active" INTEGER DEFAULT 1,
   "subscribed_at" TEXT,
   "updated_at" TEXT,
   "reason" TEXT,
   PRIMARY KEY ("channel", "chat_id")
);
INSERT INTO subscribers VALUES('telegram','1001','private','Ada','["MN", "WI"]',1,'2026-12-06T20:50:07Z','2026-12-06T20:50:07Z',NULL);
INSERT INTO subscribers VALUES('telegram','-100200','channel','News',NULL,0,'2026-12-06T20:50:07Z','2026-12-06T20:50:07Z','Forbidden: bot was kicked from the channel chat');
INSERT INTO subscribers VALUES('webhook','https://hooks.example.org/ringwatch?token=abc',NULL,'webhook URL',NULL,0,'2026-12-06T20:50:07Z','2026-12-06T20:50:07Z','HTTP 410 from https://hooks.example.org/ringwatch?token=abc (Gone): this URL is disabled');
CREATE TABLE IF NOT EXISTS "snapshots" (
   "sha256" TEXT PRIMARY KEY,
   "first_seen" TEXT,
   "last_seen" TEXT,
   "bytes" INTEGER,
   "compressed_bytes" INTEGER,
   "polls" INTEGER
);
CREATE TABLE IF NOT EXISTS "churn" (
   "id" INTEGER PRIMARY KEY,
   "poll_id" INTEGER REFERENCES "polls"("id"),
   "detected_at" TEXT,
   "field" TEXT,
   "agencies" INTEGER,
   "data" BLOB
);
CREATE TABLE IF NOT EXISTS "meta" (
   "key" TEXT PRIMARY KEY,
   "value" TEXT
);
INSERT INTO meta VALUES('install_id','66782bf5-19ac-45e5-a248-f39152ce8231');
INSERT INTO meta VALUES('schema_version','7');
CREATE TABLE IF NOT EXISTS "outbox" (
   "id" INTEGER PRIMARY KEY,
   "created_at" TEXT,
   "poll_id" INTEGER,
   "channel" TEXT,
   "recipient" TEXT,
   "kind" TEXT,
   "group_key" TEXT,
   "part" INTEGER,
   "dedupe_key" TEXT,
   "change_ids" TEXT,
   "text" TEXT,
   "attachment" TEXT,
   "meta" TEXT,
   "status" TEXT NOT NULL DEFAULT 'pending',
   "attempts" INTEGER NOT NULL DEFAULT 0,
   "next_attempt_at" TEXT DEFAULT '1970-01-01T00:00:00Z',
   "sent_at" TEXT,
   "external_id" TEXT,
   "last_error" TEXT,
   "failing_since" TEXT
);
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");
CREATE INDEX "idx_agencies_raw_hash"
    ON "agencies" ("raw_hash");
CREATE INDEX "idx_agencies_state"
    ON "agencies" ("state");
CREATE INDEX "idx_changes_kind_detected_at"
    ON "changes" ("kind", "detected_at");
CREATE INDEX "idx_changes_key"
    ON "changes" ("key");
CREATE INDEX "idx_changes_state"
    ON "changes" ("state");
CREATE INDEX "idx_changes_active_date"
    ON "changes" ("active_date");
CREATE VIEW "recent_changes" AS select detected_at, kind, name, city, state, active_date, fields, before, after
        from changes where kind != 'baseline' order by id desc;
CREATE INDEX "idx_polls_snapshot"
    ON "polls" ("snapshot");
CREATE INDEX "idx_churn_detected_at"
    ON "churn" ("detected_at");
CREATE UNIQUE INDEX "idx_changes_uuid"
    ON "changes" ("uuid");
CREATE INDEX "idx_outbox_channel_recipient_group_key_part"
    ON "outbox" ("channel", "recipient", "group_key", "part");
CREATE INDEX "idx_outbox_status_channel_next_attempt_at"
    ON "outbox" ("status", "channel", "next_attempt_at");
CREATE UNIQUE INDEX "idx_outbox_dedupe_key"
    ON "outbox" ("dedupe_key");
COMMIT;
