-- Tables keyed by their natural keys are WITHOUT ROWID: one b-tree each, so a command
-- dirties (and the WAL writes) fewer pages. Sides come back ordered by `side`.
CREATE TABLE nameplates (
  app_id     TEXT NOT NULL,
  name       TEXT NOT NULL,
  mailbox_id TEXT NOT NULL,
  PRIMARY KEY (app_id, name)
) WITHOUT ROWID;
CREATE INDEX nameplates_by_mailbox ON nameplates (app_id, mailbox_id);
CREATE TABLE nameplate_sides (
  app_id  TEXT NOT NULL,
  name    TEXT NOT NULL,
  side    TEXT NOT NULL,
  claimed INTEGER NOT NULL,
  added   REAL NOT NULL,
  PRIMARY KEY (app_id, name, side)
) WITHOUT ROWID;
CREATE INDEX nameplate_sides_by_side ON nameplate_sides (app_id, side);
CREATE TABLE mailboxes (
  app_id        TEXT NOT NULL,
  id            TEXT NOT NULL,
  for_nameplate INTEGER NOT NULL,
  updated       REAL NOT NULL,
  PRIMARY KEY (app_id, id)
) WITHOUT ROWID;
CREATE TABLE mailbox_sides (
  app_id     TEXT NOT NULL,
  mailbox_id TEXT NOT NULL,
  side       TEXT NOT NULL,
  opened     INTEGER NOT NULL,
  mood       TEXT,
  added      REAL NOT NULL,
  PRIMARY KEY (app_id, mailbox_id, side)
) WITHOUT ROWID;
-- Replays follow seq, the insertion order; msg_id is the add's `id` as JSON text.
CREATE TABLE messages (
  seq        INTEGER PRIMARY KEY,
  app_id     TEXT NOT NULL,
  mailbox_id TEXT NOT NULL,
  side       TEXT NOT NULL,
  phase      TEXT NOT NULL,
  body       TEXT NOT NULL,
  server_rx  REAL NOT NULL,
  msg_id     TEXT
);
CREATE INDEX messages_by_mailbox ON messages (app_id, mailbox_id, seq);
