-- koppel store, schema 1. One file holds the known state, the previous snapshot, saved
-- plans, the journal and the audit log. Dates are 'YYYY-MM-DD', timestamps RFC 3339 text.

-- The known state version: bumped by every change of accounts or released values.
CREATE TABLE state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO state (id, version) VALUES (1, 0);

-- Every target an applied action touched, so that a target left without accounts still
-- reads back as known (as KnownState::record leaves it).
CREATE TABLE targets (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

-- One account per target and person, as koppel last wrote it. attributes, permissions and
-- generator_inputs use koppel-store's compact length-prefixed text encoding (codec.rs):
-- reading 300k accounts as JSON was too slow.
CREATE TABLE accounts (
    target           TEXT NOT NULL,
    person           TEXT NOT NULL,
    reference        TEXT NOT NULL,
    enabled          INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    disabled_on      TEXT,
    attributes       TEXT NOT NULL,
    permissions      TEXT NOT NULL,
    generator_inputs TEXT NOT NULL,
    PRIMARY KEY (target, person)
) WITHOUT ROWID;

-- Generated values given up by deleted accounts, kept from reuse for a while.
CREATE TABLE released (
    target      TEXT NOT NULL,
    field       TEXT NOT NULL,
    value       TEXT NOT NULL,
    released_on TEXT NOT NULL,
    PRIMARY KEY (target, field, value)
) WITHOUT ROWID;

-- The previous snapshot: departments and a content hash in one row, persons as JSON arrays
-- in chunks so that they are written and parsed in parallel.
CREATE TABLE snapshot (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    hash        TEXT NOT NULL,
    persons     INTEGER NOT NULL,
    departments TEXT NOT NULL
);
CREATE TABLE snapshot_persons (
    chunk   INTEGER PRIMARY KEY,
    persons TEXT NOT NULL
);

CREATE TABLE plans (
    id            TEXT PRIMARY KEY,
    created_at    TEXT NOT NULL,
    state_version INTEGER NOT NULL,
    status        TEXT NOT NULL
        CHECK (status IN ('saved', 'held', 'applying', 'applied', 'approved', 'rejected')),
    plan          TEXT NOT NULL,
    withheld      TEXT NOT NULL,
    note          TEXT NOT NULL
);
CREATE INDEX plans_by_status ON plans (status, created_at);

-- One row per action: the intent before the target call, the outcome after it. A plan need
-- not be saved to be journaled (koppel apply plans and applies at once), so no foreign key.
CREATE TABLE journal (
    id      INTEGER PRIMARY KEY,
    plan_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    action  TEXT NOT NULL,
    status  TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    error   TEXT,
    UNIQUE (plan_id, seq)
);
CREATE INDEX journal_open ON journal (plan_id, seq) WHERE status = 'pending';

-- The audit log: append-only, each row sealed by hash = sha256(prev_hash || canonical).
CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    event      TEXT NOT NULL,
    plan_id    TEXT,
    target     TEXT,
    person     TEXT,
    action     TEXT,
    permission TEXT,
    before     TEXT NOT NULL,
    after      TEXT NOT NULL,
    reasons    TEXT NOT NULL,
    error      TEXT,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_by_person ON audit (person, at);
CREATE INDEX audit_by_target ON audit (target, at);
CREATE INDEX audit_by_at ON audit (at);

-- The chain head, updated with every append: cutting entries off the end is detected.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- The triggers keep honest mistakes out; the hash chain, not the triggers, is the guarantee.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN
    SELECT RAISE(ABORT, 'the audit chain head cannot be removed');
END;
CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head
WHEN NEW.seq < OLD.seq
BEGIN
    SELECT RAISE(ABORT, 'the audit chain head only moves forward');
END;
