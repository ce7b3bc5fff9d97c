-- koppel store, schema 2: the notification outbox. An e-mail is added here when the run that
-- caused it is applied and stays until the SMTP server accepted it, so a failed send is
-- retried by the next run and nothing is lost. Sent rows stay: their key keeps a message
-- from being added twice when a plan's journal is read again (resumed and approved runs).
CREATE TABLE outbox (
    key        TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    event      TEXT NOT NULL,
    plan_id    TEXT,
    person     TEXT,
    recipients TEXT NOT NULL, -- JSON array of addresses
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at    TEXT
);
CREATE INDEX outbox_pending ON outbox (created_at, key) WHERE sent_at IS NULL;
