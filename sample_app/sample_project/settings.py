"""Settings for the ASOQ sample app: a development-only demo, kept to what it uses."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Not a secret: this project only ever runs on a developer's machine.
SECRET_KEY = "sample-app-not-secret"
DEBUG = True
ALLOWED_HOSTS: list[str] = []  # with DEBUG, localhost, 127.0.0.1 and [::1] are allowed

# No contrib app is needed: no admin, no auth, no sessions, no static files (the page inlines
# its CSS and JS).
INSTALLED_APPS = ["asoq", "demo"]

MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

ROOT_URLCONF = "sample_project.urls"
WSGI_APPLICATION = "sample_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # The tests point this at a temporary file.
        "NAME": os.environ.get("SAMPLE_APP_DB", BASE_DIR / "db.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"

# asoq's own lines (the worker starting and stopping, tasks that fail or are lost) and the
# demo tasks' lines, with the process that wrote each: the worker's records are sent back to
# the serving process and logged there as "asoq-worker", the executor's demo lines come
# straight from the executor. Set "asoq" to DEBUG to see every task held, enqueued and run.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "readable": {
            "format": "{asctime} {levelname} {name} [{processName} {process}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "readable"},
    },
    "loggers": {
        "asoq": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "demo": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
