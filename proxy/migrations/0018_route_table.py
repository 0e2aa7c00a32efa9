"""The route table (PostgreSQL): one row per open pair that routes by number, with every
value the answer webhook reads of the callee and the conversation, under a unique index.

The answer reads it by one probe instead of joining four tables (issue 17,
bench/RESULTS.md). Triggers keep it in the same transaction as every write of
participants and conversations, whatever makes the write (the ORM, ``.update()``, raw SQL,
``TRUNCATE``): a statement's conversations have their routes recomputed from the tables
they mirror, after their rows are locked, so two transactions that change one
conversation recompute it one after the other. SQLite keeps reading the join.

The column lists are written out here, as a migration must be; a test compares them with
the models (tests/proxy/test_route_table.py).
"""

from django.db import migrations

_CALLEE = [
    "id",
    "public_id",
    "conversation_id",
    "service_id",
    "position",
    "real_number",
    "name",
    "country",
    "proxy_number",
    "active",
    "pin",
    "routes_by_pair",
    "cooldown_until",
    "validation",
    "validation_due_at",
    "number_type",
    "created_at",
]
_CONVERSATION = ["id", "service_id", "status", "expires_at", "record", "call_time_limit", "ring_timeout"]

_VALUES = ", ".join(
    [
        "caller.real_number AS caller_real_number",
        "caller.proxy_number AS caller_proxy_number",
        "caller.id AS caller_id",
        "caller.public_id AS caller_public_id",
        *(f'callee."{c}" AS "callee_{c}"' for c in _CALLEE),
        *(f'conversation."{c}" AS "conversation_{c}"' for c in _CONVERSATION),
    ]
)
# The answer's own join (proxy.selectors), one row per caller.
_ROUTES = f"""
SELECT DISTINCT ON (caller.id) {_VALUES}
FROM proxy_participant AS caller
JOIN proxy_participant AS callee ON callee.conversation_id = caller.conversation_id AND callee.id <> caller.id
JOIN proxy_conversation AS conversation ON conversation.id = caller.conversation_id
WHERE caller.active AND caller.routes_by_pair AND callee.active
"""

_FORWARD = f"""
CREATE TABLE proxy_route AS {_ROUTES} ORDER BY caller.id, callee.id;
ALTER TABLE proxy_route ADD PRIMARY KEY (caller_id);
CREATE UNIQUE INDEX proxy_route_pair ON proxy_route (caller_real_number, caller_proxy_number);
CREATE INDEX proxy_route_conversation ON proxy_route (conversation_id);

CREATE FUNCTION proxy_route_refresh(ids uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    -- One transaction at a time per conversation: row locks (a sweep of many conversations
    -- takes no room in the shared lock table), in one order, held to the end of the
    -- transaction. A statement here sees what was committed before it, so the routes are
    -- recomputed from the latest state.
    PERFORM 1 FROM proxy_conversation WHERE id = ANY(ids) ORDER BY id FOR NO KEY UPDATE;
    DELETE FROM proxy_route WHERE conversation_id = ANY(ids);
    INSERT INTO proxy_route {_ROUTES.replace("WHERE caller.active", "WHERE caller.conversation_id = ANY(ids) AND caller.active")}
        ORDER BY caller.id, callee.id;
END
$$;

-- Everything again, from the tables: after rows were written with the triggers off
-- (session_replication_role = replica, as a bulk load does), or to repair.
CREATE FUNCTION proxy_route_rebuild() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    written bigint;
BEGIN
    LOCK TABLE proxy_participant, proxy_conversation IN SHARE MODE;
    DELETE FROM proxy_route;
    INSERT INTO proxy_route {_ROUTES} ORDER BY caller.id, callee.id;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$;

CREATE FUNCTION proxy_route_participants() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM proxy_route_refresh(ARRAY(SELECT DISTINCT conversation_id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM proxy_route_refresh(ARRAY(SELECT DISTINCT conversation_id FROM old_rows));
    ELSE
        PERFORM proxy_route_refresh(
            ARRAY(SELECT conversation_id FROM new_rows UNION SELECT conversation_id FROM old_rows)
        );
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER proxy_route_participant_insert AFTER INSERT ON proxy_participant
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION proxy_route_participants();
CREATE TRIGGER proxy_route_participant_update AFTER UPDATE ON proxy_participant
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION proxy_route_participants();
CREATE TRIGGER proxy_route_participant_delete AFTER DELETE ON proxy_participant
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION proxy_route_participants();

-- A conversation's routes carry some of its columns: recomputed when one of those changes.
CREATE FUNCTION proxy_route_conversations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM proxy_route_refresh(ARRAY(
        SELECT new_row.id FROM new_rows AS new_row JOIN old_rows AS old_row ON old_row.id = new_row.id
        WHERE (new_row.service_id, new_row.status, new_row.expires_at, new_row.record, new_row.call_time_limit,
               new_row.ring_timeout)
            IS DISTINCT FROM (old_row.service_id, old_row.status, old_row.expires_at, old_row.record,
                              old_row.call_time_limit, old_row.ring_timeout)
    ));
    RETURN NULL;
END
$$;

CREATE TRIGGER proxy_route_conversation_update AFTER UPDATE ON proxy_conversation
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION proxy_route_conversations();

-- TRUNCATE fires no DELETE trigger (Django's test flush, the benchmarks' reset).
CREATE FUNCTION proxy_route_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE proxy_route;
    RETURN NULL;
END
$$;

CREATE TRIGGER proxy_route_participant_truncate AFTER TRUNCATE ON proxy_participant
    FOR EACH STATEMENT EXECUTE FUNCTION proxy_route_truncate();
"""

_BACKWARD = """
DROP TRIGGER IF EXISTS proxy_route_participant_truncate ON proxy_participant;
DROP TRIGGER IF EXISTS proxy_route_conversation_update ON proxy_conversation;
DROP TRIGGER IF EXISTS proxy_route_participant_delete ON proxy_participant;
DROP TRIGGER IF EXISTS proxy_route_participant_update ON proxy_participant;
DROP TRIGGER IF EXISTS proxy_route_participant_insert ON proxy_participant;
DROP FUNCTION IF EXISTS proxy_route_truncate();
DROP FUNCTION IF EXISTS proxy_route_conversations();
DROP FUNCTION IF EXISTS proxy_route_participants();
DROP FUNCTION IF EXISTS proxy_route_refresh(uuid[]);
DROP FUNCTION IF EXISTS proxy_route_rebuild();
DROP TABLE IF EXISTS proxy_route;
"""


def _statements(script):
    """One statement at a time (a prepared statement holds one): split after each ``;`` that
    ends a line outside a function body."""
    statements, current, in_body = [], [], False
    for line in script.strip().splitlines():
        current.append(line)
        if line.count("$$") % 2:
            in_body = not in_body
        if not in_body and line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip().rstrip(";"))
            current = []
    return statements


FORWARD = _statements(_FORWARD)
BACKWARD = _statements(_BACKWARD)


def _on_postgresql(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement, None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("proxy", "0017_service_ring_and_call_limits"),
    ]

    operations = [
        migrations.RunPython(_on_postgresql(FORWARD), _on_postgresql(BACKWARD)),
    ]
