"""A small Django project on a litevfs replica (tests/test_django.py runs manage.py
commands against it). The replica URL and options come from the environment."""

import json
import os

SECRET_KEY = "litevfs-test-project"  # noqa: S105 - a test project, never deployed
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "library"]
DATABASES = {
    "default": {
        "ENGINE": "litevfs.django",
        "NAME": os.environ.get("LITEVFS_DJANGO_NAME", ""),
        "OPTIONS": json.loads(os.environ.get("LITEVFS_DJANGO_OPTIONS", "{}")),
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
