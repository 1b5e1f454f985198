import os
import sys

from django.apps import AppConfig


class NotesConfig(AppConfig):
    name = "tests.django_site.notes"
    label = "notes"

    def ready(self) -> None:
        # The original README's way to start the worker, guarded so only runserver's serving
        # child starts one (the tests turn it on with ASOQ_TEST_START_IN_READY).
        if os.environ.get("ASOQ_TEST_START_IN_READY"):
            from asoq import start_worker

            if "runserver" in sys.argv and os.environ.get("RUN_MAIN"):
                start_worker()
