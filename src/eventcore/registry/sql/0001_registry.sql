-- The live members of each service (the lease primitive's table, as in a bus file):
-- one row per instance, alive until expires_at (seconds since the epoch).
CREATE TABLE bus_members (
    scope      TEXT NOT NULL,
    member     TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (scope, member)
) WITHOUT ROWID;

-- What each instance is: its Record as JSON, rewritten at every heartbeat.
CREATE TABLE registry_instances (
    service     TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    record      BLOB NOT NULL,
    renewed_at  REAL NOT NULL,
    stale_at    REAL NOT NULL,
    PRIMARY KEY (service, instance_id)
) WITHOUT ROWID;
