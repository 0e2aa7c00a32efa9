"""Every outbox row knows when it is next due: SMS rows and participants' number checks
gain a due time (the other outboxes have ``next_attempt_at`` already), and SMS rows the
moment their send began (``sending_since``). Nullable: unset means due since creation."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("numbers", "0002_initial"),
        ("proxy", "0011_messages_tables"),
    ]

    operations = [
        migrations.AddField(
            model_name="notification",
            name="next_attempt_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="notification",
            name="sending_since",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="participant",
            name="validation_due_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
