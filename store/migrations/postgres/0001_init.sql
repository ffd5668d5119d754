-- kuma-rs store schema for PostgreSQL (applied by `migrate up`).
-- `resources` follows Kuma's table (migrations up to 1710856785); `revision`,
-- `store_revision` and `changes` carry the change feed. Names sort bytewise (COLLATE "C"),
-- as every backend lists them.

CREATE TABLE resources (
    name              varchar(253) COLLATE "C" NOT NULL,
    mesh              varchar(100) COLLATE "C" NOT NULL,
    type              varchar(100) COLLATE "C" NOT NULL,
    version           bigint       NOT NULL,
    spec              text         NOT NULL,
    creation_time     timestamp    NOT NULL DEFAULT now(),
    modification_time timestamp    NOT NULL DEFAULT now(),
    owner_name        varchar(253) COLLATE "C",
    owner_mesh        varchar(100) COLLATE "C",
    owner_type        varchar(100) COLLATE "C",
    labels            jsonb        NOT NULL DEFAULT '{}'::jsonb,
    status            jsonb        NOT NULL DEFAULT '{}'::jsonb,
    -- the revision of the change that last wrote this row
    revision          bigint       NOT NULL,
    CONSTRAINT resources_pkey PRIMARY KEY (name, mesh, type),
    CONSTRAINT owner_fk FOREIGN KEY (owner_name, owner_mesh, owner_type)
        REFERENCES resources (name, mesh, type) ON DELETE CASCADE
);

CREATE INDEX owner_fk_index ON resources (owner_type, owner_mesh, owner_name);
CREATE INDEX resources_type_mesh_name ON resources (type, mesh, name);

-- One row: the newest committed revision and how far the change log has been pruned. Every
-- write transaction locks it first (SELECT … FOR UPDATE) and holds it to commit, so that
-- commit order is revision order and no reader can pass over a revision still in flight.
CREATE TABLE store_revision (
    id             smallint PRIMARY KEY CHECK (id = 1),
    revision       bigint   NOT NULL,
    pruned_through bigint   NOT NULL
);
INSERT INTO store_revision (id, revision, pruned_through) VALUES (1, 0, 0);

-- The change log: one row per changed resource row, dense revisions.
CREATE TABLE changes (
    revision bigint       PRIMARY KEY,
    action   varchar(10)  NOT NULL,
    type     varchar(100) COLLATE "C" NOT NULL,
    mesh     varchar(100) COLLATE "C" NOT NULL,
    name     varchar(253) COLLATE "C" NOT NULL
);
