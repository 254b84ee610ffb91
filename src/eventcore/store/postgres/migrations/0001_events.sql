-- Migration 1 enforces:
--   * a (stream, version) pair is written once        (events_stream_version_key)
--   * an event id is stored once                       (events_event_id_key)
--   * a position is used once                          (primary key)
--   * each event records the transaction that wrote it (transaction_id), which the
--     global-log reader compares with the snapshot's xmin (see store/postgres/_read.py)
--   * stream names sort by code point, as Python sorts str (COLLATE "C")
--   * an idempotency key is used once and keeps the first append's result

-- CACHE 1 is load-bearing: a session-local cache would hand out positions out of the
-- order in which the position mutex is taken, breaking the ordering argument.
CREATE SEQUENCE IF NOT EXISTS __schema__.positions AS bigint START 1 CACHE 1;

CREATE TABLE IF NOT EXISTS __schema__.events (
    position        bigint      PRIMARY KEY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id       text        COLLATE "C" NOT NULL,
    version         bigint      NOT NULL CHECK (version >= 1),
    event_id        uuid        NOT NULL,
    type            text        NOT NULL,
    schema_version  integer     NOT NULL,
    data            bytea       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

-- read_all(types=...) walks this index once per wanted type, in position order.
CREATE INDEX IF NOT EXISTS events_type_position_idx ON __schema__.events (type, position);

-- One row per stream with at least one event: its version and newest position.
CREATE TABLE IF NOT EXISTS __schema__.streams (
    stream_id       text    COLLATE "C" PRIMARY KEY,
    version         bigint  NOT NULL CHECK (version >= 1),
    last_position   bigint  NOT NULL
);

-- The result of the first append made with each key; parallel arrays keep the
-- caller's order of streams and events.
CREATE TABLE IF NOT EXISTS __schema__.idempotency_keys (
    key             text        PRIMARY KEY,
    stream_ids      text[]      NOT NULL,
    stream_versions bigint[]    NOT NULL,
    positions       bigint[]    NOT NULL,
    event_ids       uuid[]      NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
