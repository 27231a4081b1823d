-- A database as ringwatch d3980cb (main before outbox_times_as_iso_text) wrote it: six schema
-- steps, the outbox's next_attempt_at and failing_since in epoch seconds. Its .dump, made by
-- Store.open, Outbox.queue and the updates of each row's state (due, retrying, failing, sent,
-- given up) that tests/test_deliver.py's upgrade test describes.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE IF NOT EXISTS "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);
INSERT INTO _sqlite_migrations VALUES(1,'ringwatch','create_agencies_polls_changes_outbox','2026-11-29 17:04:17.556123+00:00');
INSERT INTO _sqlite_migrations VALUES(2,'ringwatch','add_subscribers_and_recent_changes_view','2026-11-29 17:04:17.556515+00:00');
INSERT INTO _sqlite_migrations VALUES(3,'ringwatch','add_snapshots_and_poll_origin','2026-11-29 17:04:17.562068+00:00');
INSERT INTO _sqlite_migrations VALUES(4,'ringwatch','add_outbox_failing_since','2026-11-29 17:04:17.562409+00:00');
INSERT INTO _sqlite_migrations VALUES(5,'ringwatch','add_poll_warning_missing_and_churn','2026-11-29 17:04:17.563223+00:00');
INSERT INTO _sqlite_migrations VALUES(6,'ringwatch','add_change_uuids_and_install_id','2026-11-29 17:04:17.564027+00:00');
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
   "next_attempt_at" REAL DEFAULT 0.0,
   "sent_at" TEXT,
   "external_id" TEXT,
   "last_error" TEXT
, "failing_since" REAL);
INSERT INTO outbox VALUES(1,'2026-11-29T17:04:17Z',NULL,'scripted','a','alert','g:due',0,'scripted|a|g:due|0','[]','due',NULL,NULL,'pending',0,0.0,NULL,NULL,NULL,NULL);
INSERT INTO outbox VALUES(2,'2026-11-29T17:04:17Z',NULL,'scripted','b','alert','g:retry due',0,'scripted|b|g:retry due|0','[]','retry due',NULL,NULL,'pending',2,1795650000.4000000953,NULL,NULL,'ConnectionError: reset',1795640000.5999999045);
INSERT INTO outbox VALUES(3,'2026-11-29T17:04:17Z',NULL,'scripted','c','alert','g:retry later',0,'scripted|c|g:retry later|0','[]','retry later',NULL,NULL,'pending',1,4102444800.1999998091,NULL,NULL,'TimeoutError: slow',1795640000.5999999045);
INSERT INTO outbox VALUES(4,'2026-11-29T17:04:17Z',NULL,'scripted','d','alert','g:failing too long',0,'scripted|d|g:failing too long|0','[]','failing too long',NULL,NULL,'pending',9,1795650000.0,NULL,NULL,'HTTP 503',1795651200.5999999046);
INSERT INTO outbox VALUES(5,'2026-11-29T17:04:17Z',NULL,'scripted','e','alert','g:failing briefly',0,'scripted|e|g:failing briefly|0','[]','failing briefly',NULL,NULL,'pending',1,1795650000.0,NULL,NULL,'HTTP 503',1795737600.9000000954);
INSERT INTO outbox VALUES(6,'2026-11-29T17:04:17Z',NULL,'scripted','f','alert','g:sent',0,'scripted|f|g:sent|0','[]','sent',NULL,NULL,'sent',1,0.0,'2026-11-19T00:00:00Z','m0',NULL,NULL);
INSERT INTO outbox VALUES(7,'2026-11-29T17:04:17Z',NULL,'scripted','g','alert','g:given up',0,'scripted|g|g:given up|0','[]','given up',NULL,NULL,'failed',4,0.0,NULL,NULL,'HTTP 400',1795000000.5);
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
INSERT INTO meta VALUES('install_id','c062116c-868d-4fcb-9f75-595a24464a21');
INSERT INTO meta VALUES('schema_version','6');
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
CREATE UNIQUE INDEX "idx_outbox_dedupe_key"
    ON "outbox" ("dedupe_key");
CREATE INDEX "idx_outbox_status_channel_next_attempt_at"
    ON "outbox" ("status", "channel", "next_attempt_at");
CREATE INDEX "idx_outbox_channel_recipient_group_key_part"
    ON "outbox" ("channel", "recipient", "group_key", "part");
CREATE VIEW "recent_changes" AS select detected_at, kind, name, city, state, active_date, fields, before, after
        from changes where kind != 'baseline' order by id desc;
CREATE INDEX "idx_polls_snapshot"
    ON "polls" ("snapshot");
CREATE INDEX "idx_churn_detected_at"
    ON "churn" ("detected_at");
CREATE UNIQUE INDEX "idx_changes_uuid"
    ON "changes" ("uuid");
COMMIT;
