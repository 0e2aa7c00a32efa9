"""The routing constraints for PINs, built without blocking writes on PostgreSQL.

- (real_number, proxy_number) unique among open participants routed by their number;
- (proxy_number, pin) unique among open participants with a PIN;
- a participant not routed by their number has a PIN;
- the indexes that keep the cooling and cooling-PIN checks to a probe.

proxy_participant takes an insert with every conversation: on PostgreSQL each index is
built CONCURRENTLY (outside a transaction), the new pair constraint before the old one
is dropped, so (real_number, proxy_number) stays enforced throughout. Processes still
running the previous code keep routing meanwhile: their read of the pair is then
served by participant_pair_recent, which starts with the same two columns. The check
is added NOT VALID and validated apart. SQLite, which has no such options, gets the
plain statements.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


def _postgresql(schema_editor) -> bool:  # type: ignore[no-untyped-def]
    return schema_editor.connection.vendor == "postgresql"


class AddConstraintConcurrently(migrations.AddConstraint):
    """A partial unique constraint built with CREATE UNIQUE INDEX CONCURRENTLY on PostgreSQL."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if not _postgresql(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            statement = str(self.constraint.create_sql(model, schema_editor))
            schema_editor.execute(statement.replace("CREATE UNIQUE INDEX", "CREATE UNIQUE INDEX CONCURRENTLY", 1))
        return None

    def database_backwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if not _postgresql(schema_editor):
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(self.constraint.name)}")
        return None


class RemoveConstraintConcurrently(migrations.RemoveConstraint):
    """Drop a partial unique constraint (an index on PostgreSQL) with DROP INDEX CONCURRENTLY."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if not _postgresql(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(self.name)}")
        return None

    def database_backwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if not _postgresql(schema_editor):
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        constraint = to_state.models[app_label, self.model_name_lower].get_constraint_by_name(self.name)
        statement = str(constraint.create_sql(model, schema_editor))
        schema_editor.execute(statement.replace("CREATE UNIQUE INDEX", "CREATE UNIQUE INDEX CONCURRENTLY", 1))
        return None


class AddCheckConstraintValidatedApart(migrations.AddConstraint):
    """A check constraint added NOT VALID, then validated, on PostgreSQL: the validating scan
    takes a lock that lets reads and writes go on. SQLite rebuilds the table as usual."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if not _postgresql(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.execute(str(self.constraint.create_sql(model, schema_editor)) + " NOT VALID", params=None)
            table, name = schema_editor.quote_name(model._meta.db_table), schema_editor.quote_name(self.constraint.name)
            schema_editor.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")
        return None


class AddIndexConcurrentlyOnPostgreSQL(AddIndexConcurrently):
    """CREATE INDEX CONCURRENTLY on PostgreSQL, a plain CREATE INDEX elsewhere (SQLite)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if _postgresql(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if _postgresql(schema_editor):
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("proxy", "0014_pin_fields"),
    ]

    operations = [
        AddConstraintConcurrently(
            model_name="participant",
            constraint=models.UniqueConstraint(
                condition=models.Q(("active", True), ("routes_by_pair", True)),
                fields=("real_number", "proxy_number"),
                name="participant_unique_open_pair_routed",
            ),
        ),
        RemoveConstraintConcurrently(model_name="participant", name="participant_unique_open_pair"),
        AddConstraintConcurrently(
            model_name="participant",
            constraint=models.UniqueConstraint(
                condition=models.Q(("active", True), ("pin__isnull", False)),
                fields=("proxy_number", "pin"),
                name="participant_unique_open_pin",
            ),
        ),
        AddCheckConstraintValidatedApart(
            model_name="participant",
            constraint=models.CheckConstraint(
                condition=models.Q(("routes_by_pair", True), ("pin__isnull", False), _connector="OR"),
                name="participant_routed_by_pair_or_pin",
            ),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="participant",
            index=models.Index(
                condition=models.Q(("active", False), ("routes_by_pair", True)),
                fields=["real_number", "proxy_number", "cooldown_until"],
                name="participant_pair_cooling",
            ),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="participant",
            index=models.Index(
                condition=models.Q(("pin__isnull", False)), fields=["proxy_number", "pin"], name="participant_pin_recent"
            ),
        ),
    ]
