-- Migration 2: append_events(), the single-append function, and the PostgreSQL write
-- path's ordering proof. Its own SQLSTATE: EC001 (misuse: called in a transaction that
-- already has an xid; class "EC" is not used by PostgreSQL).
--
-- The store now writes through ``append_batch`` (migration 3, ``0003_append_batch.sql``): many
-- appends in one transaction. ``append_events`` below, one append per transaction, stays
-- installed because migrations are history and an older client may still call it; it
-- takes the same stream locks in the same order, so the two can run side by side. The
-- argument below is about transactions — one append or a batch of them alike — and is the
-- one ``append_batch`` relies on.
--
-- How the global log stays gap-free for readers (docs/architecture.md#postgres-to-scale)
-- --------------------------------------------------------------------------------------
--
-- Sequence values commit out of order, so "position < p is committed" cannot be read off the
-- sequence. Readers instead return only rows whose ``transaction_id`` is below
-- ``pg_snapshot_xmin(pg_current_snapshot())`` — every transaction with a smaller xid has
-- finished — and they return them in position order. That is only safe if a transaction
-- with a larger xid can never hold a smaller position. Without care it can: A takes xid 10,
-- B takes xid 11 and draws position 5, A draws position 6 and commits. While B is still in
-- flight a reader's xmin is 11, so it returns position 6 and checkpoints there; when B
-- commits, its position 5 lies behind the checkpoint and is skipped for good.
--
-- So an append draws its xid **and** its positions together under a short mutex (a
-- session-level advisory lock, released right after, not held to commit):
--
--     lock → pg_current_xact_id() (first xid of this transaction) → nextval/setval → unlock
--
-- The xid counter and the sequence then advance in the same order, hence for two appends
-- ``xid_A < xid_B ⇔ every position of A < every position of B``. A reader that returned
-- positions up to ``p`` saw only rows with xid below its xmin ``x``; any row it has not
-- returned either has xid < x (finished before the read, so visible then, and above ``p``
-- because the read was in position order) or xid ≥ x > the xid of every returned row, and
-- so, by the mutex, a position above every returned position. Nothing can appear at or
-- below ``p`` later: no skipped events. A long-running append only delays readers.
--
-- The mutex covers two cheap calls, not the inserts and not the commit's WAL flush, so
-- writers still commit (and group-commit) in parallel. For the order argument the xid must
-- be assigned inside the mutex: everything before it (advisory locks, plain reads) assigns
-- no xid, and the function refuses to run in a transaction that already has one.
--
-- Other locks: a transaction-scoped advisory lock per stream named in ``expected``, taken in
-- key order (no deadlocks between appends that share streams), held to commit. They make
-- the version checks authoritative — for existing streams and for streams that must stay
-- absent alike — and let a concurrent duplicate of an idempotency key wait for the first.
-- All checks run before anything is written, so a rejected append leaves no trace.

-- Migration 2 enforces, for every append:
--   * all checks (idempotency key, expected versions, stored event ids) before any write;
--   * expected versions checked under per-stream locks held to commit;
--   * the xid and the positions drawn together under the position mutex, so position
--     order equals xid order (the proof above);
--   * one idempotency row per key, written in the same transaction as the events;
--   * a notification on the schema's channel with the last position, sent on commit.
CREATE OR REPLACE FUNCTION __schema__.append_events(
    p_expected_streams  text[],
    p_expected_versions bigint[],
    p_stream_ids        text[],
    p_versions          bigint[],
    p_event_ids         uuid[],
    p_types             text[],
    p_schema_versions   integer[],
    p_data              bytea[],
    p_metadata          jsonb[],
    p_written_streams   text[],
    p_written_versions  bigint[],
    p_key               text,
    p_notify            boolean
) RETURNS TABLE (
    outcome             text,
    first_position      bigint,
    conflict_stream     text,
    conflict_expected   bigint,
    conflict_actual     bigint,
    duplicate_id        uuid,
    dedup_stream_ids    text[],
    dedup_versions      bigint[],
    dedup_positions     bigint[],
    dedup_event_ids     uuid[]
) LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    n           integer := cardinality(p_event_ids);
    lock_key    bigint;
    v_xid       xid8;
    v_row       record;
BEGIN
    -- Per-stream locks in key order: two appends sharing streams queue on the first shared
    -- key instead of deadlocking. Held to commit, so nobody moves these streams between
    -- our check and our commit; a stream expected absent stays absent. Assigns no xid.
    FOR lock_key IN
        SELECT DISTINCT hashtextextended('__schema_text__/' || s, 0)
          FROM unnest(p_expected_streams) AS s
         ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
    END LOOP;

    -- A used key wins over everything else (even stale versions): return its result.
    -- Under the stream locks, a concurrent first use of the key has committed by now.
    IF p_key IS NOT NULL THEN
        SELECT k.stream_ids, k.stream_versions, k.positions, k.event_ids INTO v_row
          FROM __schema__.idempotency_keys AS k WHERE k.key = p_key;
        IF FOUND THEN
            outcome := 'deduplicated';
            dedup_stream_ids := v_row.stream_ids;
            dedup_versions := v_row.stream_versions;
            dedup_positions := v_row.positions;
            dedup_event_ids := v_row.event_ids;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;

    -- Every expected version, in the caller's order; the first mismatch is reported.
    SELECT e.stream_id, e.expected, coalesce(h.version, 0) AS actual INTO v_row
      FROM unnest(p_expected_streams, p_expected_versions)
               WITH ORDINALITY AS e(stream_id, expected, ord)
      LEFT JOIN __schema__.streams AS h ON h.stream_id = e.stream_id
     WHERE coalesce(h.version, 0) <> e.expected
     ORDER BY e.ord
     LIMIT 1;
    IF FOUND THEN
        outcome := 'conflict';
        conflict_stream := v_row.stream_id;
        conflict_expected := v_row.expected;
        conflict_actual := v_row.actual;
        RETURN NEXT;
        RETURN;
    END IF;

    -- Event ids already stored (the unique constraint still guards a concurrent race).
    SELECT e.id INTO v_row
      FROM unnest(p_event_ids) WITH ORDINALITY AS e(id, ord)
      JOIN __schema__.events AS s ON s.event_id = e.id
     ORDER BY e.ord
     LIMIT 1;
    IF FOUND THEN
        outcome := 'duplicate';
        duplicate_id := v_row.id;
        RETURN NEXT;
        RETURN;
    END IF;

    -- The position mutex. The ordering proof needs our xid to be assigned inside it.
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'append_events must run before anything else in its transaction'
            USING ERRCODE = 'EC001';
    END IF;
    PERFORM pg_advisory_lock(__position_lock__);
    BEGIN
        v_xid := pg_current_xact_id();
        first_position := nextval('__schema__.positions');
        IF n > 1 THEN
            -- Nobody else draws while we hold the mutex, so our positions are contiguous.
            PERFORM setval('__schema__.positions', first_position + n - 1);
        END IF;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        -- A session lock outlives the transaction: never leave it held on a pooled
        -- connection (a cancelled query would otherwise stall every writer).
        PERFORM pg_advisory_unlock(__position_lock__);
        RAISE;
    END;
    PERFORM pg_advisory_unlock(__position_lock__);

    -- The first write. A concurrent append with the same key but other streams waits here
    -- for the first to finish; if that one committed, return its result instead.
    IF p_key IS NOT NULL THEN
        INSERT INTO __schema__.idempotency_keys
               (key, stream_ids, stream_versions, positions, event_ids)
        VALUES (p_key, p_written_streams, p_written_versions,
                ARRAY(SELECT generate_series(first_position, first_position + n - 1)),
                p_event_ids)
        ON CONFLICT (key) DO NOTHING;
        IF NOT FOUND THEN
            SELECT k.stream_ids, k.stream_versions, k.positions, k.event_ids INTO v_row
              FROM __schema__.idempotency_keys AS k WHERE k.key = p_key;
            outcome := 'deduplicated';
            first_position := NULL;
            dedup_stream_ids := v_row.stream_ids;
            dedup_versions := v_row.stream_versions;
            dedup_positions := v_row.positions;
            dedup_event_ids := v_row.event_ids;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;

    INSERT INTO __schema__.events
           (position, transaction_id, stream_id, version, event_id, type,
            schema_version, data, metadata)
    SELECT first_position + e.ord - 1, v_xid, e.stream_id, e.version, e.event_id, e.type,
           e.schema_version, e.data, e.metadata
      FROM unnest(p_stream_ids, p_versions, p_event_ids, p_types, p_schema_versions,
                  p_data, p_metadata)
               WITH ORDINALITY AS e(stream_id, version, event_id, type, schema_version,
                                    data, metadata, ord);

    INSERT INTO __schema__.streams AS h (stream_id, version, last_position)
    SELECT e.stream_id, max(e.version), first_position + max(e.ord) - 1
      FROM unnest(p_stream_ids, p_versions) WITH ORDINALITY AS e(stream_id, version, ord)
     GROUP BY e.stream_id
    ON CONFLICT (stream_id) DO UPDATE
       SET version = EXCLUDED.version, last_position = EXCLUDED.last_position;

    -- Tell live followers, once this commits. The cost is not small: PostgreSQL makes
    -- notifying transactions commit one at a time (a cluster-wide lock held through the
    -- commit's WAL flush), which is why a store may turn it off (?notify=off).
    IF p_notify THEN
        PERFORM pg_notify('__channel__', (first_position + n - 1)::text);
    END IF;

    outcome := 'appended';
    RETURN NEXT;
END
$fn$;
