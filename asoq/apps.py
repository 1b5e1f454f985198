"""``"asoq"`` in ``INSTALLED_APPS``: settings as defaults, and their system checks.

Nothing starts here: ``ready()`` runs in every ``manage.py`` command and in ``runserver``'s
reloader process, none of which should get a worker.
"""

from __future__ import annotations

from django.apps import AppConfig


class AsoqConfig(AppConfig):
    name = "asoq"
    verbose_name = "ASOQ"

    def ready(self) -> None:
        from django.core import checks as django_checks

        from . import checks, conf, runtime

        runtime.defaults = conf.options
        django_checks.register(checks.check_settings)
