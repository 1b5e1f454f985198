"""What an executor does when its parent had Django configured.

``setup()`` runs once before the first task: ``django.setup()`` (the executor is a fresh
interpreter, with the parent's ``DJANGO_SETTINGS_MODULE``), then the ``tasks`` module of every
installed app is imported, so a broken one is logged at start rather than at its first task.
Every task then runs between two ``close_old_connections()`` calls: requests do that through
Django's signals, and nothing else would close a connection that went stale between tasks.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

logger = logging.getLogger("asoq.executor")


def setup() -> Callable[[], AbstractContextManager[None]]:
    import django
    from django.apps import apps
    from django.db import close_old_connections
    from django.utils.module_loading import module_has_submodule

    django.setup()
    for app_config in apps.get_app_configs():
        if module_has_submodule(app_config.module, "tasks"):
            try:
                importlib.import_module(f"{app_config.name}.tasks")
            except Exception:
                logger.exception("asoq executor could not import %s.tasks", app_config.name)

    @contextlib.contextmanager
    def around_task() -> Iterator[None]:
        close_old_connections()
        try:
            yield
        finally:
            close_old_connections()

    return around_task
