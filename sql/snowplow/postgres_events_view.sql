-- target-miso: fold the Postgres loader's shredded tables back into one events stream.
--
-- The Snowplow Postgres loader (and Redshift's shredded layout) stores each self-describing
-- event and entity in its own table (com_acme_thing_1 ...), joined to atomic.events on
-- root_id = event_id and root_tstamp = collector_tstamp. This script creates three views:
--
-- * <schema>.events_for_miso: every column of <schema>.events plus `contexts` and
--   `unstruct_event` as Snowplow's self-describing JSON envelopes, the "TSV-shaped" layout
--   the Snowplow preset reads;
-- * <schema>.events_for_miso_narrow: the same, narrowed to what the preset reads (31 atomic
--   columns, and only the tables of the events and entities it maps). The shipped pipeline
--   reads this one with tap-postgres-copy, which has Postgres write each row as JSON;
-- * <schema>.events_for_miso_json: `payload`, the narrowed row serialized as JSON text by
--   the database (nulls left out), next to event_id, collector_tstamp (and load_tstamp when
--   the table has it) to replicate on, and app_id and domain_userid to partition on: for
--   MeltanoLabs' tap-postgres (mapping option payload_column), which then moves two columns
--   per row instead of ~130 (docs/performance.md, "The whole pipeline").
--
-- Replicate one of them with tap-postgres-copy (stream `<schema>-events_for_miso_narrow`) or
-- tap-postgres (`<schema>-events_for_miso_json`, ...); replication key load_tstamp when
-- <schema>.events has it, else collector_tstamp with a lookback: docs/snowplow.md,
-- "Late rows".
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
    -- What the Snowplow preset reads, with any options (target_miso/mappings/snowplow/columns.py;
    -- tests/snowplow/test_columns.py keeps the two equal): its atomic columns, and the schemas
    -- of the events and entities it reads (<vendor>_<name>, the table names less _<major>).
    read_columns text[] := ARRAY[
        'event_id', 'event', 'event_name', 'collector_tstamp', 'derived_tstamp',
        'dvce_created_tstamp', 'user_id', 'domain_userid', 'network_userid', 'domain_sessionid',
        'page_url', 'page_referrer', 'page_title', 'useragent', 'br_lang', 'user_ipaddress',
        'mkt_campaign', 'mkt_source', 'mkt_medium', 'mkt_term', 'mkt_content',
        'se_category', 'se_action', 'se_label', 'se_property', 'se_value',
        'tr_orderid', 'tr_total', 'ti_orderid', 'ti_sku', 'ti_quantity'];
    read_schemas text[] := ARRAY[
        'com_snowplowanalytics_snowplow_web_page',
        'com_snowplowanalytics_snowplow_client_session',
        'com_snowplowanalytics_snowplow_ecommerce_product',
        'com_snowplowanalytics_snowplow_ecommerce_promotion',
        'com_snowplowanalytics_snowplow_ecommerce_transaction',
        'com_snowplowanalytics_snowplow_ecommerce_user',
        'com_snowplowanalytics_snowplow_media_player',
        'com_snowplowanalytics_snowplow_media_session',
        'com_snowplowanalytics_snowplow_ecommerce_snowplow_ecommerce_action',
        'com_snowplowanalytics_snowplow_site_search',
        'com_snowplowanalytics_snowplow_add_to_cart',
        'com_snowplowanalytics_snowplow_remove_from_cart',
        'com_snowplowanalytics_snowplow_media_end_event',
        'com_snowplowanalytics_snowplow_media_player_event'];
    no_parts constant text := 'SELECT false AS is_event, NULL::float8[] AS position, NULL::jsonb AS item WHERE false';
    all_parts text;
    read_parts text;
    narrow_columns text;
    json_pairs text;
    load_column text := '';
    contexts constant text := $contexts$
               CASE WHEN folded.entities IS NOT NULL THEN jsonb_build_object(
                   'schema', 'iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0',
                   'data', folded.entities) END$contexts$;
    unstruct_event constant text := $unstruct$
               CASE WHEN folded.event IS NOT NULL THEN jsonb_build_object(
                   'schema', 'iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0',
                   'data', folded.event) END$unstruct$;
    folded constant text := $folded$
          FROM %1$I.events e
          LEFT JOIN LATERAL (
              SELECT jsonb_agg(s.item ORDER BY s.position) FILTER (WHERE NOT s.is_event) AS entities,
                     (jsonb_agg(s.item ORDER BY s.position) FILTER (WHERE s.is_event)) -> 0 AS event
                FROM (SELECT is_event, item, min(position) AS position
                        FROM (%2$s) parts
                       GROUP BY is_event, item) s
          ) folded ON true$folded$;
BEGIN
    WITH shredded_tables AS (
        SELECT table_name, row_number() OVER (ORDER BY table_name) AS ordinal,
               -- The loader's table is <schema key>_<major>, cut to Postgres's 63 bytes.
               regexp_replace(table_name, '_[0-9]+$', '') = ANY (read_schemas)
               OR (length(table_name) = 63
                   AND EXISTS (SELECT 1 FROM unnest(read_schemas) AS k
                                WHERE starts_with(k || '_', table_name))) AS is_read
          FROM information_schema.columns
         WHERE table_schema = events_schema AND column_name = 'root_id'
           AND table_name IN (SELECT table_name FROM information_schema.columns
                               WHERE table_schema = events_schema AND column_name = 'schema_name')
    ), parts AS (
        SELECT table_name, is_read, format(
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
            ordinal, events_schema, table_name) AS part
          FROM shredded_tables
    )
    SELECT coalesce(string_agg(part, E'\n        UNION ALL\n        ' ORDER BY table_name), no_parts),
           coalesce(string_agg(part, E'\n        UNION ALL\n        ' ORDER BY table_name)
                        FILTER (WHERE is_read), no_parts)
      INTO all_parts, read_parts
      FROM parts;

    -- Every column of <schema>.events, and the event and entities of every shredded table.
    EXECUTE format($view$
        CREATE OR REPLACE VIEW %1$I.events_for_miso AS
        SELECT e.*, $view$ || contexts || ' AS contexts, ' || unstruct_event
        || ' AS unstruct_event' || folded, events_schema, all_parts);

    -- Only what the preset reads: its columns (those the table has) and the tables of the
    -- schemas it reads, so the database neither folds nor sends the rest.
    SELECT string_agg(format('e.%I', wanted.name), ', ' ORDER BY wanted.position),
           string_agg(format('%L, e.%I', wanted.name, wanted.name), ', ' ORDER BY wanted.position)
      INTO narrow_columns, json_pairs
      FROM unnest(read_columns) WITH ORDINALITY AS wanted(name, position)
     WHERE wanted.name IN (SELECT column_name FROM information_schema.columns
                            WHERE table_schema = events_schema AND table_name = 'events');
    IF EXISTS (SELECT 1 FROM information_schema.columns
                WHERE table_schema = events_schema AND table_name = 'events'
                  AND column_name = 'load_tstamp') THEN
        load_column := ', e.load_tstamp';
    END IF;
    EXECUTE format($view$
        CREATE OR REPLACE VIEW %1$I.events_for_miso_narrow AS
        SELECT $view$ || narrow_columns || ', ' || contexts || ' AS contexts, ' || unstruct_event
        || ' AS unstruct_event' || load_column || folded, events_schema, read_parts);

    -- The narrowed row serialized by the database as one JSON text, nulls left out: the tap
    -- moves `payload` and the replication key instead of ~35 columns (the preset's
    -- payload_column). app_id and domain_userid are there for partitioned runs' WHERE
    -- clauses (docs/meltano.md); a tap sends only the columns selected.
    -- load_tstamp comes last in both narrowed views, so that re-running the script after the
    -- loader added the column replaces them in place (a view may only gain columns at its end).
    EXECUTE format($view$
        CREATE OR REPLACE VIEW %1$I.events_for_miso_json AS
        SELECT e.event_id, e.collector_tstamp, e.app_id, e.domain_userid,
               json_strip_nulls(json_build_object($view$ || json_pairs
        || ', ''contexts'', ' || contexts || ', ''unstruct_event'', ' || unstruct_event
        || '))::text AS payload' || load_column || folded, events_schema, read_parts);
END
$create_view$;
