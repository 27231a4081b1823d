BEGIN TRANSACTION;
CREATE TABLE "agencies" (
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
INSERT INTO "agencies" VALUES('mn/crystal-police-department','Crystal Police Department','Crystal','MN','2020-06-03',NULL,'https://ring.com/a/1',45.03,-93.36,'{}','1aa24ad2a9fd29baa6b8aea1',1,0,'2026-11-29T13:53:18Z','2026-11-29T13:53:18Z',NULL,NULL);
INSERT INTO "agencies" VALUES('az/mesa-police-department','Mesa Police Department','Mesa','AZ','2019-01-02',NULL,NULL,33.4,-111.8,'{}','cbabf45ac439567279fbc737',0,0,'2026-11-29T13:53:18Z','2026-11-29T13:53:18Z','2026-11-29T13:53:21Z','az/city-of-mesa-police-department');
INSERT INTO "agencies" VALUES('ia/ames-fire-department','Ames Fire Department','Ames','IA','2020-07-01',NULL,NULL,42.0,-93.6,'{}','02270250b995ac99bc46fba5',1,0,'2026-11-29T13:53:21Z','2026-11-29T13:53:21Z',NULL,NULL);
INSERT INTO "agencies" VALUES('az/city-of-mesa-police-department','City of Mesa Police Department','Mesa','AZ','2019-01-02',NULL,NULL,33.4,-111.8,'{}','7d93f5e91db63d433aca856a',1,0,'2026-11-29T13:53:21Z','2026-11-29T13:53:21Z',NULL,NULL);
CREATE TABLE "changes" (
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
);
INSERT INTO "changes" VALUES(1,1,'2026-11-29T13:53:18Z','baseline','mn/crystal-police-department','Crystal Police Department','Crystal','MN','2020-06-03',NULL,NULL,NULL,0);
INSERT INTO "changes" VALUES(2,1,'2026-11-29T13:53:18Z','baseline','az/mesa-police-department','Mesa Police Department','Mesa','AZ','2019-01-02',NULL,NULL,NULL,0);
INSERT INTO "changes" VALUES(3,3,'2026-11-29T13:53:21Z','added','ia/ames-fire-department','Ames Fire Department','Ames','IA','2020-07-01',NULL,NULL,'{"active_date": "2020-07-01", "city": "Ames", "extra": {}, "key": "ia/ames-fire-department", "lat": 42.0, "lon": -93.6, "name": "Ames Fire Department", "profile_url": null, "state": "IA", "video_requests": null}',1);
INSERT INTO "changes" VALUES(4,3,'2026-11-29T13:53:21Z','renamed','az/city-of-mesa-police-department','City of Mesa Police Department','Mesa','AZ','2019-01-02','["name"]','{"active_date": "2019-01-02", "city": "Mesa", "extra": {}, "key": "az/mesa-police-department", "lat": 33.4, "lon": -111.8, "name": "Mesa Police Department", "profile_url": null, "state": "AZ", "video_requests": null}','{"active_date": "2019-01-02", "city": "Mesa", "extra": {}, "key": "az/city-of-mesa-police-department", "lat": 33.4, "lon": -111.8, "name": "City of Mesa Police Department", "profile_url": null, "state": "AZ", "video_requests": null}',1);
CREATE TABLE "meta" (
   "key" TEXT PRIMARY KEY,
   "value" TEXT
);
INSERT INTO "meta" VALUES('schema_version','2');
CREATE TABLE "outbox" (
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
);
INSERT INTO "outbox" VALUES(1,'2026-11-29T13:53:18Z',1,'console','stdout','notice','baseline:1',0,'console|stdout|baseline:1|0','[]','ringwatch is now tracking 2 Ring police partnerships in 2 states. Alerts start with the next change.',NULL,NULL,'sent',1,0.0,'2026-11-29T13:53:18Z',NULL,NULL);
INSERT INTO "outbox" VALUES(2,'2026-11-29T13:53:18Z',2,'console','stdout','warning','warning:streak-start:1',0,'console|stdout|warning:streak-start:1|0','[]','ringwatch warning: guard tripped: 1 of 2 known agencies (50%) have a new name, more than guard.max_missing_share (10%); not believing it (ringwatch poll --force accepts it once). Agencies are unchanged; you will hear again when it recovers.',NULL,NULL,'sent',1,0.0,'2026-11-29T13:53:18Z',NULL,NULL);
INSERT INTO "outbox" VALUES(3,'2026-11-29T13:53:21Z',3,'console','stdout','warning','warning:streak-end:2',0,'console|stdout|warning:streak-end:2|0','[]','ringwatch warning: polling is healthy again after 1 failed or suspect polls in a row',NULL,NULL,'sent',1,0.0,'2026-11-29T13:53:21Z',NULL,NULL);
INSERT INTO "outbox" VALUES(4,'2026-11-29T13:53:21Z',3,'console','stdout','alert','change:3',0,'console|stdout|change:3|0','[3]','New partnership: Ames FD, IA (active since 2020-07-01)',NULL,NULL,'sent',1,0.0,'2026-11-29T13:53:21Z',NULL,NULL);
INSERT INTO "outbox" VALUES(5,'2026-11-29T13:53:21Z',3,'console','stdout','alert','change:4',0,'console|stdout|change:4|0','[4]','Renamed: Mesa PD is now City of Mesa PD, AZ',NULL,NULL,'sent',1,0.0,'2026-11-29T13:53:21Z',NULL,NULL);
CREATE TABLE "polls" (
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
);
INSERT INTO "polls" VALUES(1,'2026-11-29T13:53:18Z','2026-11-29T13:53:18Z','baseline','/tmp/publish-release/run/a.json',200,316,'21ea072e00e50d240b95e521b363734250965f83db5589d3c447efaec031e6c9',NULL,NULL,2,0,0,0,0,2,NULL);
INSERT INTO "polls" VALUES(2,'2026-11-29T13:53:18Z','2026-11-29T13:53:18Z','suspect','/tmp/publish-release/run/a.json',200,456,'56b670fb7cea2f2509076b56620ffae7a69face0e6e979cc797278d6d5ad830b',NULL,NULL,3,NULL,NULL,NULL,NULL,2,'1 of 2 known agencies (50%) have a new name, more than guard.max_missing_share (10%); not believing it (ringwatch poll --force accepts it once)');
INSERT INTO "polls" VALUES(3,'2026-11-29T13:53:21Z','2026-11-29T13:53:21Z','ok','/tmp/publish-release/run/a.json',200,456,'56b670fb7cea2f2509076b56620ffae7a69face0e6e979cc797278d6d5ad830b',NULL,NULL,3,1,0,1,0,2,NULL);
CREATE TABLE "subscribers" (
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
INSERT INTO "subscribers" VALUES('telegram','12345','private','Reporter','["MN"]',1,'2026-01-01T00:00:00Z',NULL,NULL);
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
COMMIT;
