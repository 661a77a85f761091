-- target-miso: fold the Postgres loader's shredded tables back into one events stream.
--
-- The Snowplow Postgres loader (and Redshift's shredded layout) stores each self-describing
-- event and entity in its own table (com_acme_thing_1 ...), joined to atomic.events on
-- root_id = event_id and root_tstamp = collector_tstamp. This script creates the view
-- <schema>.events_for_miso: every column of <schema>.events plus `contexts` and
-- `unstruct_event` as Snowplow's self-describing JSON envelopes, the "TSV-shaped" layout the
-- Snowplow preset reads. Replicate the view with tap-postgres (stream `<schema>-events_for_miso`,
-- replication key load_tstamp when <schema>.events has it, else collector_tstamp with a
-- lookback: docs/snowplow.md, "Late rows").
--
-- It finds every shredded table of the schema (any table with root_id and schema_name
-- columns), so re-run it after the loader creates a table for a new schema:
--
--   psql -v ON_ERROR_STOP=1 -c "SET target_miso.snowplow_schema = 'atomic'" \
--        -f sql/snowplow/postgres_events_view.sql          (the schema defaults to atomic)
--
-- A table's row is the event's own data (unstruct_event) when its schema_vendor/schema_name
-- equal the event's event_vendor/event_name, and an entity (contexts) otherwise.
-- A duplicated event (Snowplow delivers some twice) has its entity rows duplicated too, so
-- identical entity rows are folded once, in the order they were loaded.
-- Nested objects the loader flattened into "parent.child" columns stay flat.
--
-- Indexes: the loader creates its tables without any, and without them the view is quadratic
-- (every event scans every shredded table) and tap-postgres's incremental query
-- (WHERE collector_tstamp >= <bookmark> ORDER BY collector_tstamp) sorts the whole table before
-- its first row. So this script first creates, if missing, an index on
-- <schema>.events (collector_tstamp) and one on (root_id, root_tstamp) of every shredded table;
-- re-running it indexes tables the loader created since. Building an index on a large table
-- blocks the loader's inserts into that table while it runs (see docs/snowplow.md for building
-- them CONCURRENTLY beforehand instead; this script then finds them by name and skips them).

DO $create_indexes$
DECLARE
    events_schema text := coalesce(nullif(current_setting('target_miso.snowplow_schema', true), ''), 'atomic');
    shredded_table text;
BEGIN
    IF to_regclass(format('%I.events', events_schema)) IS NOT NULL THEN
        EXECUTE format('CREATE INDEX IF NOT EXISTS events_collector_tstamp_miso ON %I.events (collector_tstamp)',
                       events_schema);
        -- Loaders that fill load_tstamp (RDB Loader 4.0.0 and later) allow replicating on it.
        IF EXISTS (SELECT 1 FROM information_schema.columns
                    WHERE table_schema = events_schema AND table_name = 'events'
                      AND column_name = 'load_tstamp') THEN
            EXECUTE format('CREATE INDEX IF NOT EXISTS events_load_tstamp_miso ON %I.events (load_tstamp)',
                           events_schema);
        END IF;
    END IF;
    FOR shredded_table IN
        SELECT table_name FROM information_schema.columns
         WHERE table_schema = events_schema AND column_name = 'root_id'
           AND table_name IN (SELECT table_name FROM information_schema.columns
                               WHERE table_schema = events_schema AND column_name = 'root_tstamp')
           AND table_name IN (SELECT table_name FROM information_schema.tables
                               WHERE table_schema = events_schema AND table_type = 'BASE TABLE')
         ORDER BY table_name
    LOOP
        -- Index names are limited to 63 bytes, table names too: a digest keeps them unique.
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I (root_id, root_tstamp)',
                       left(shredded_table, 40) || '_root_miso_' || left(md5(shredded_table), 8),
                       events_schema, shredded_table);
    END LOOP;
END
$create_indexes$;

DO $create_view$
DECLARE
    events_schema text := coalesce(nullif(current_setting('target_miso.snowplow_schema', true), ''), 'atomic');
    shredded text;
BEGIN
    SELECT string_agg(format(
        $part$SELECT t.schema_vendor = e.event_vendor AND t.schema_name = e.event_name AS is_event,
               ARRAY[%s, (t.ctid::text::point)[0], (t.ctid::text::point)[1]] AS position,
               jsonb_build_object(
                   'schema', 'iglu:' || t.schema_vendor || '/' || t.schema_name || '/' ||
                             t.schema_format || '/' || t.schema_version,
                   'data', to_jsonb(t) - ARRAY['schema_vendor', 'schema_name', 'schema_format',
                       'schema_version', 'root_id', 'root_tstamp', 'ref_root', 'ref_tree',
                       'ref_parent']) AS item
          FROM %I.%I t
         WHERE t.root_id = e.event_id AND t.root_tstamp = e.collector_tstamp$part$,
        ordinal, events_schema, table_name), E'\n        UNION ALL\n        ' ORDER BY table_name)
      INTO shredded
      FROM (SELECT table_name, row_number() OVER (ORDER BY table_name) AS ordinal
              FROM information_schema.columns
             WHERE table_schema = events_schema AND column_name = 'root_id'
               AND table_name IN (SELECT table_name FROM information_schema.columns
                                   WHERE table_schema = events_schema AND column_name = 'schema_name')
           ) shredded_tables;

    IF shredded IS NULL THEN  -- no shredded tables yet: nothing to fold
        shredded := 'SELECT false AS is_event, NULL::float8[] AS position, NULL::jsonb AS item WHERE false';
    END IF;

    EXECUTE format($view$
        CREATE OR REPLACE VIEW %1$I.events_for_miso AS
        SELECT e.*,
               CASE WHEN folded.entities IS NOT NULL THEN jsonb_build_object(
                   'schema', 'iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0',
                   'data', folded.entities) END AS contexts,
               CASE WHEN folded.event IS NOT NULL THEN jsonb_build_object(
                   'schema', 'iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0',
                   'data', folded.event) END AS unstruct_event
          FROM %1$I.events e
          LEFT JOIN LATERAL (
              SELECT jsonb_agg(s.item ORDER BY s.position) FILTER (WHERE NOT s.is_event) AS entities,
                     (jsonb_agg(s.item ORDER BY s.position) FILTER (WHERE s.is_event)) -> 0 AS event
                FROM (SELECT is_event, item, min(position) AS position
                        FROM (%2$s) parts
                       GROUP BY is_event, item) s
          ) folded ON true
    $view$, events_schema, shredded);
END
$create_view$;
