"""A tiny Django project for the integration tests; each test shapes it through the env.

``ASOQ_TEST_SETTINGS`` holds a JSON object of extra settings (the ``ASOQ_*`` ones under test),
``ASOQ_TEST_DB`` the SQLite file.
"""

import json
import os

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "testserver"]
INSTALLED_APPS = ["asoq", "tests.django_site.notes"]
ROOT_URLCONF = "tests.django_site.urls"
WSGI_APPLICATION = "tests.django_site.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ASOQ_TEST_DB", ":memory:"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"asoq": {"handlers": ["stderr"], "level": "DEBUG", "propagate": False}},
}

globals().update(json.loads(os.environ.get("ASOQ_TEST_SETTINGS", "{}")))
