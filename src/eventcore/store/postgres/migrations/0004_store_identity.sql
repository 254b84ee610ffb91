-- The store's identity (EventStore.store_id): one row, made once per schema — with the
-- schema, or when a schema of an earlier version is first migrated — so that a
-- checkpoint counted in this schema is never taken for a position in another store.
CREATE TABLE IF NOT EXISTS __schema__.store_identity (
    one         boolean     PRIMARY KEY DEFAULT true CHECK (one),
    store_id    uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO __schema__.store_identity DEFAULT VALUES ON CONFLICT DO NOTHING;
