from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("proxy", "0005_drop_covered_indexes"),
    ]

    operations = [
        # With a database default, inserts from processes still running the previous
        # code (which leave the column out) keep working during a deploy.
        migrations.AddField(
            model_name="callevent",
            name="payload_redacted",
            field=models.BooleanField(db_default=False, default=False),
        ),
    ]
