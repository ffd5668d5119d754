-- kuma-rs store schema for SQLite (applied automatically when the store opens).
-- `resources` follows Kuma's PostgreSQL table; `revision`, `store_revision` and `changes`
-- carry the change feed.

CREATE TABLE resources (
    name              TEXT    NOT NULL,
    mesh              TEXT    NOT NULL,
    type              TEXT    NOT NULL,
    version           INTEGER NOT NULL,
    spec              TEXT    NOT NULL,
    creation_time     TEXT    NOT NULL,
    modification_time TEXT    NOT NULL,
    owner_name        TEXT,
    owner_mesh        TEXT,
    owner_type        TEXT,
    labels            TEXT    NOT NULL DEFAULT '{}',
    status            TEXT    NOT NULL DEFAULT '{}',
    -- the revision of the change that last wrote this row
    revision          INTEGER NOT NULL,
    CONSTRAINT resources_pkey PRIMARY KEY (name, mesh, type),
    CONSTRAINT owner_fk FOREIGN KEY (owner_name, owner_mesh, owner_type)
        REFERENCES resources (name, mesh, type) ON DELETE CASCADE
);

CREATE INDEX owner_fk_index ON resources (owner_type, owner_mesh, owner_name);
CREATE INDEX resources_type_mesh_name ON resources (type, mesh, name);

-- One row: the newest committed revision (writers bump it inside their transaction, which
-- serializes them) and how far the change log has been pruned.
CREATE TABLE store_revision (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    revision       INTEGER NOT NULL,
    pruned_through INTEGER NOT NULL
);
INSERT INTO store_revision (id, revision, pruned_through) VALUES (1, 0, 0);

-- The change log: one row per changed resource row, dense revisions.
CREATE TABLE changes (
    revision INTEGER PRIMARY KEY,
    action   TEXT NOT NULL,
    type     TEXT NOT NULL,
    mesh     TEXT NOT NULL,
    name     TEXT NOT NULL
);
