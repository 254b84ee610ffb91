-- Migration 3 enforces, for every batch of appends:
--   * each append is decided alone, in batch order, seeing the earlier appends' writes;
--   * every decision is made before the transaction has an xid, and nothing is written
--     for a refused append;
--   * stream and key locks for the whole batch in one ascending key order, held to commit;
--   * the xid and the positions of ALL written events drawn in one position-mutex
--     section, so position order equals xid order between transactions (0002_append_events.sql);
--   * one notification per batch, with its last position, sent on commit.
CREATE OR REPLACE FUNCTION __schema__.append_batch(
    p_streams           text[],     -- every stream the batch names, once (stream number)
    p_keys              text[],     -- every idempotency key of the batch, once (key number)
    p_append_key        integer[],  -- per append: its key number, 0 for none
    p_expected_first    integer[],  -- per append, plus one: its first expected entry
    p_expected_stream   integer[],  -- per expected entry: stream number
    p_expected_version  bigint[],   --                      and the version expected
    p_event_first       integer[],  -- per append, plus one: its first event
    p_event_append      integer[],  -- per event: its append's number
    p_event_stream      integer[],  --            its stream number
    p_event_version     bigint[],   --            its version if its append goes in
    p_event_group       integer[],  --            the first event of the batch with its id
    p_event_ids         uuid[],
    p_types             text[],
    p_schema_versions   integer[],
    p_data              bytea[],
    p_metadata          jsonb[],
    p_notify            boolean
) RETURNS TABLE (
    append_no           integer,    -- 0: the batch's first position, in first_position
    outcome             text,
    first_position      bigint,
    conflict_stream     text,
    conflict_expected   bigint,
    conflict_actual     bigint,
    duplicate_id        uuid,
    same_as             integer,
    dedup_stream_ids    text[],
    dedup_versions      bigint[],
    dedup_positions     bigint[],
    dedup_event_ids     uuid[]
) LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    n_appends   integer := cardinality(p_append_key);
    n_events    integer := cardinality(p_event_ids);
    -- The batch's view of the store, moved on as appends succeed. Arrays indexed by the
    -- numbers the client gave: O(1) to read and to update.
    v_version   bigint[];   -- per stream number: its version
    v_key_used  boolean[];  -- per key number: a committed append used it
    v_key_owner integer[];  -- per key number: the append of this batch that used it
    v_id_stored boolean[];  -- per event: its id is stored already
    v_id_taken  boolean[];  -- per event group: an append of this batch wrote that id
    v_rank      integer[];  -- per event: its place among the events written, 0 = not
    v_written   integer := 0;
    v_keyed     integer := 0;
    v_refused   boolean;
    v_first     bigint;
    v_xid       xid8;
    v_inserted  integer;
    i_app       integer;
    i_key       integer;
    i_exp       integer;
    i_ev        integer;
    i_stream    integer;
    lock_key    bigint;
BEGIN
    -- All the batch's locks in one ascending order (see store/postgres/_append_batch.py): streams as in
    -- append_events, keys under another prefix. Advisory locks assign no xid.
    FOR lock_key IN
        SELECT DISTINCT l.k FROM (
            SELECT hashtextextended('__schema_text__/' || s.id, 0) FROM unnest(p_streams) AS s(id)
            UNION ALL
            SELECT hashtextextended('__schema_text__#' || k.id, 0) FROM unnest(p_keys) AS k(id)
        ) AS l(k)
        ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
    END LOOP;

    -- The stored state the decisions start from, read once, under the locks. (Each
    -- statement of a VOLATILE function takes a new snapshot: these see every transaction
    -- that held our locks before us.)
    SELECT array_agg(coalesce(h.version, 0) ORDER BY s.ord) INTO v_version
      FROM unnest(p_streams) WITH ORDINALITY AS s(id, ord)
      LEFT JOIN __schema__.streams AS h ON h.stream_id = s.id;
    SELECT array_agg(u.key IS NOT NULL ORDER BY w.ord) INTO v_key_used
      FROM unnest(p_keys) WITH ORDINALITY AS w(id, ord)
      LEFT JOIN __schema__.idempotency_keys AS u ON u.key = w.id;
    SELECT array_agg(s.event_id IS NOT NULL ORDER BY w.ord) INTO v_id_stored
      FROM unnest(p_event_ids) WITH ORDINALITY AS w(id, ord)
      LEFT JOIN __schema__.events AS s ON s.event_id = w.id;
    v_key_owner := array_fill(0, ARRAY[cardinality(p_keys)]);
    v_id_taken := array_fill(false, ARRAY[n_events]);
    v_rank := array_fill(0, ARRAY[n_events]);

    -- Decide each append in turn, as if it ran alone right after the earlier ones.
    FOR i_app IN 1 .. n_appends LOOP
        -- A used key wins over everything else (even stale versions): its first result.
        i_key := p_append_key[i_app];
        IF i_key > 0 AND v_key_owner[i_key] > 0 THEN
            RETURN QUERY SELECT i_app, 'deduplicated'::text, NULL::bigint, NULL::text,
                NULL::bigint, NULL::bigint, NULL::uuid, v_key_owner[i_key], NULL::text[],
                NULL::bigint[], NULL::bigint[], NULL::uuid[];
            CONTINUE;
        END IF;
        IF i_key > 0 AND v_key_used[i_key] THEN
            RETURN QUERY SELECT i_app, 'deduplicated'::text, NULL::bigint, NULL::text,
                NULL::bigint, NULL::bigint, NULL::uuid, NULL::integer, u.stream_ids,
                u.stream_versions, u.positions, u.event_ids
              FROM __schema__.idempotency_keys AS u WHERE u.key = p_keys[i_key];
            CONTINUE;
        END IF;

        -- Every expected version, in the caller's order; the first mismatch is reported.
        v_refused := false;
        FOR i_exp IN p_expected_first[i_app] .. p_expected_first[i_app + 1] - 1 LOOP
            i_stream := p_expected_stream[i_exp];
            IF v_version[i_stream] <> p_expected_version[i_exp] THEN
                RETURN QUERY SELECT i_app, 'conflict'::text, NULL::bigint,
                    p_streams[i_stream], p_expected_version[i_exp], v_version[i_stream],
                    NULL::uuid, NULL::integer, NULL::text[], NULL::bigint[], NULL::bigint[],
                    NULL::uuid[];
                v_refused := true;
                EXIT;
            END IF;
        END LOOP;
        CONTINUE WHEN v_refused;

        -- Event ids stored before, or written by an earlier append of this batch.
        FOR i_ev IN p_event_first[i_app] .. p_event_first[i_app + 1] - 1 LOOP
            IF v_id_stored[i_ev] OR v_id_taken[p_event_group[i_ev]] THEN
                RETURN QUERY SELECT i_app, 'duplicate'::text, NULL::bigint, NULL::text,
                    NULL::bigint, NULL::bigint, p_event_ids[i_ev], NULL::integer,
                    NULL::text[], NULL::bigint[], NULL::bigint[], NULL::uuid[];
                v_refused := true;
                EXIT;
            END IF;
        END LOOP;
        CONTINUE WHEN v_refused;

        -- It goes in: later appends see its versions, its ids and its key.
        FOR i_ev IN p_event_first[i_app] .. p_event_first[i_app + 1] - 1 LOOP
            v_written := v_written + 1;
            v_rank[i_ev] := v_written;
            v_id_taken[p_event_group[i_ev]] := true;
            v_version[p_event_stream[i_ev]] := p_event_version[i_ev];
        END LOOP;
        IF i_key > 0 THEN
            v_key_owner[i_key] := i_app;
            v_keyed := v_keyed + 1;
        END IF;
    END LOOP;

    IF v_written = 0 THEN
        RETURN;  -- nothing goes in: no xid, no positions, no notification
    END IF;

    -- The position mutex: the xid and every position of the batch, together.
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'append_batch must run before anything else in its transaction'
            USING ERRCODE = 'EC001';
    END IF;
    PERFORM pg_advisory_lock(__position_lock__);
    BEGIN
        v_xid := pg_current_xact_id();
        v_first := nextval('__schema__.positions');
        IF v_written > 1 THEN
            -- Nobody else draws while we hold the mutex, so our positions are contiguous.
            PERFORM setval('__schema__.positions', v_first + v_written - 1);
        END IF;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        -- A session lock outlives the transaction: never leave it held on a pooled
        -- connection (a cancelled query would otherwise stall every writer).
        PERFORM pg_advisory_unlock(__position_lock__);
        RAISE;
    END;
    PERFORM pg_advisory_unlock(__position_lock__);

    -- Keys first: a clash here (a writer outside our key locks) rolls back everything.
    IF v_keyed > 0 THEN
        WITH written AS (
            SELECT w.app, w.stream, w.version, w.rank, w.event_id
              FROM unnest(p_event_append, p_event_stream, p_event_version, v_rank,
                          p_event_ids) AS w(app, stream, version, rank, event_id)
             WHERE w.rank > 0 AND p_append_key[w.app] > 0
        ), heads AS (
            SELECT x.app, array_agg(s.id ORDER BY x.first_rank) AS stream_ids,
                   array_agg(x.version ORDER BY x.first_rank) AS versions
              FROM (SELECT app, stream, min(rank) AS first_rank, max(version) AS version
                      FROM written GROUP BY app, stream) AS x
              JOIN unnest(p_streams) WITH ORDINALITY AS s(id, ord) ON s.ord = x.stream
             GROUP BY x.app
        ), logs AS (
            SELECT app, array_agg(v_first + rank - 1 ORDER BY rank) AS positions,
                   array_agg(event_id ORDER BY rank) AS event_ids
              FROM written GROUP BY app
        )
        INSERT INTO __schema__.idempotency_keys
               (key, stream_ids, stream_versions, positions, event_ids)
        SELECT p_keys[p_append_key[h.app]], h.stream_ids, h.versions, g.positions,
               g.event_ids
          FROM heads AS h JOIN logs AS g ON g.app = h.app
        ON CONFLICT (key) DO NOTHING;
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
        IF v_inserted <> v_keyed THEN
            RAISE EXCEPTION 'an idempotency key of this batch was used concurrently'
                USING ERRCODE = 'EC002';
        END IF;
    END IF;

    INSERT INTO __schema__.events
           (position, transaction_id, stream_id, version, event_id, type,
            schema_version, data, metadata)
    SELECT v_first + w.rank - 1, v_xid, s.id, w.version, w.event_id, w.type,
           w.schema_version, w.data, w.metadata
      FROM unnest(p_event_stream, p_event_version, p_event_ids, p_types, p_schema_versions,
                  p_data, p_metadata, v_rank)
               AS w(stream, version, event_id, type, schema_version, data, metadata, rank)
      JOIN unnest(p_streams) WITH ORDINALITY AS s(id, ord) ON s.ord = w.stream
     WHERE w.rank > 0
     ORDER BY w.rank;

    -- One row per stream: appends of this batch to one stream follow each other, so the
    -- newest version and the newest position are both the largest.
    INSERT INTO __schema__.streams AS h (stream_id, version, last_position)
    SELECT s.id, max(w.version), v_first + max(w.rank) - 1
      FROM unnest(p_event_stream, p_event_version, v_rank) AS w(stream, version, rank)
      JOIN unnest(p_streams) WITH ORDINALITY AS s(id, ord) ON s.ord = w.stream
     WHERE w.rank > 0
     GROUP BY s.id
    ON CONFLICT (stream_id) DO UPDATE
       SET version = EXCLUDED.version, last_position = EXCLUDED.last_position;

    -- One notification for the whole batch. PostgreSQL commits notifying transactions
    -- one at a time (a cluster-wide lock held through the WAL flush): per batch, not per
    -- append, that costs little.
    IF p_notify THEN
        PERFORM pg_notify('__channel__', (v_first + v_written - 1)::text);
    END IF;

    RETURN QUERY SELECT 0, 'appended'::text, v_first, NULL::text, NULL::bigint,
        NULL::bigint, NULL::uuid, NULL::integer, NULL::text[], NULL::bigint[],
        NULL::bigint[], NULL::uuid[];
END
$fn$;
