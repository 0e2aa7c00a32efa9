from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgreSQL(AddIndexConcurrently):
    """CREATE INDEX CONCURRENTLY on PostgreSQL, where the participant and SMS tables are
    large and written by every conversation creation; a plain CREATE INDEX elsewhere."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("proxy", "0012_ops_outbox_due"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="notification",
            index=models.Index(
                condition=models.Q(("status", "queued")), fields=["next_attempt_at", "created_at"], name="notification_due"
            ),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="participant",
            index=models.Index(
                condition=models.Q(("validation", "pending")),
                fields=["validation_due_at", "created_at"],
                name="participant_validation_due",
            ),
        ),
    ]
