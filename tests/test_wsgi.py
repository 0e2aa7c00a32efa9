"""The WSGI entry point gunicorn loads: views imported and the start-up heap frozen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_PROBE = """
import gc, json, sys
frozen_before = gc.get_freeze_count()
import config.wsgi
print(json.dumps({"before": frozen_before, "after": gc.get_freeze_count(),
                  "views": "webhooks.views" in sys.modules and "proxy.api.views" in sys.modules}))
"""


def test_loading_the_app_imports_the_views_and_freezes_the_heap():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEBUG": "true"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    probe = json.loads(out.stdout.strip().splitlines()[-1])

    assert probe["before"] == 0
    assert probe["views"] is True
    # Django, DRF, the Vonage SDK and the views: far more than a bare interpreter holds.
    assert probe["after"] > 50_000
