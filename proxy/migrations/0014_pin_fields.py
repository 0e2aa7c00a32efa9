import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    # Every new column either is nullable or has a database default: processes still
    # running the code before this migration insert rows without them.

    dependencies = [
        ("proxy", "0013_ops_outbox_due_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="service",
            name="pin_mode",
            field=models.CharField(
                choices=[
                    ("off", "Off: the caller's number routes"),
                    ("fallback", "Fallback: the caller's number routes, else a PIN"),
                    ("always", "Always: every caller enters a PIN"),
                ],
                db_default="off",
                default="off",
                help_text="Applies to conversations opened from now on; open ones keep the routing they were opened with.",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="service",
            name="pin_prompt_text",
            field=models.CharField(
                db_default="Please enter your six-digit PIN on your keypad.",
                default="Please enter your six-digit PIN on your keypad.",
                max_length=1500,
            ),
        ),
        migrations.AddField(
            model_name="service",
            name="pin_invalid_text",
            field=models.CharField(
                db_default="Sorry, that PIN is not valid.", default="Sorry, that PIN is not valid.", max_length=1500
            ),
        ),
        migrations.AddField(
            model_name="service",
            name="pin_no_input_text",
            field=models.CharField(
                db_default="We did not receive a PIN.", default="We did not receive a PIN.", max_length=1500
            ),
        ),
        migrations.AddField(
            model_name="service",
            name="pin_goodbye_text",
            field=models.CharField(
                db_default="Sorry, we could not verify your PIN. Goodbye.",
                default="Sorry, we could not verify your PIN. Goodbye.",
                max_length=1500,
            ),
        ),
        migrations.AlterField(
            model_name="service",
            name="sms_template",
            field=models.CharField(
                default="{service}: to reach {counterpart}, call {proxy_number}.",
                help_text="Placeholders: {service}, {name}, {counterpart}, {proxy_number}, {pin} (with PINs on, a "
                "sentence naming the PIN is added when the template has no {pin}).",
                max_length=1000,
            ),
        ),
        migrations.AddField(
            model_name="participant",
            name="pin",
            field=models.CharField(blank=True, max_length=6, null=True),
        ),
        migrations.AddField(
            model_name="participant",
            name="routes_by_pair",
            field=models.BooleanField(
                db_default=True,
                default=True,
                help_text="A call from the real number to the proxy number reaches the other.",
            ),
        ),
        migrations.AddField(
            model_name="call",
            name="routed_by",
            field=models.CharField(
                blank=True,
                choices=[("", "Not routed"), ("pair", "Caller's number"), ("pin", "PIN")],
                db_default="",
                default="",
                max_length=4,
            ),
        ),
        migrations.CreateModel(
            name="PinCall",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("call_uuid", models.CharField(max_length=64, unique=True)),
                ("proxy_number", models.CharField(help_text="The number dialled.", max_length=15)),
                ("caller", models.CharField(blank=True, default="", max_length=15)),
                ("tries", models.PositiveSmallIntegerField(default=0, help_text="Inputs received.")),
                (
                    "wrong_pins",
                    models.PositiveSmallIntegerField(default=0, help_text="Inputs that were not an open PIN."),
                ),
                (
                    "outcome",
                    models.CharField(
                        choices=[
                            ("pending", "Pending (no PIN entered yet)"),
                            ("failed", "Failed (a wrong PIN, or no tries left)"),
                            ("connected", "Connected"),
                            ("ended", "A PIN of an ended conversation"),
                        ],
                        default="pending",
                        max_length=10,
                    ),
                ),
                ("failed_at", models.DateTimeField(blank=True, null=True)),
                ("locked_until", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "participant",
                    models.ForeignKey(
                        blank=True,
                        help_text="The PIN's owner.",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="proxy.participant",
                    ),
                ),
                (
                    "service",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="proxy.service"
                    ),
                ),
            ],
            options={
                "verbose_name": "PIN call",
                "ordering": ["-created_at"],
                "indexes": [
                    models.Index(fields=["proxy_number", "caller", "-created_at"], name="pincall_number_caller"),
                    models.Index(
                        condition=models.Q(("locked_until__isnull", False)),
                        fields=["proxy_number", "caller", "locked_until"],
                        name="pincall_lockout",
                    ),
                ],
            },
        ),
    ]
