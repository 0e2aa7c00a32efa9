# Participants get an opaque public id (issue 18). Added nullable, filled row by row
# (each a fresh uuid4), then made unique and required, as Django's docs do for unique fields.

import uuid

from django.db import migrations, models


def fill_public_ids(apps, schema_editor):
    Participant = apps.get_model("proxy", "Participant")
    pending = Participant.objects.filter(public_id__isnull=True).only("pk")
    batch = []
    for participant in pending.iterator(chunk_size=2000):
        participant.public_id = uuid.uuid4()
        batch.append(participant)
        if len(batch) >= 2000:
            Participant.objects.bulk_update(batch, ["public_id"])
            batch = []
    if batch:
        Participant.objects.bulk_update(batch, ["public_id"])


class Migration(migrations.Migration):
    dependencies = [
        ("proxy", "0008_security_admin_list_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="participant",
            name="public_id",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(fill_public_ids, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="participant",
            name="public_id",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
    ]
