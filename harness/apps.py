from django.apps import AppConfig


class HarnessConfig(AppConfig):
    name = "harness"
    label = "harness"
    verbose_name = "Sandbox try-it tools"
