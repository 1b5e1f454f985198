#!/usr/bin/env python
"""The sample app's ``manage.py``: ``python sample_app/manage.py migrate`` from the repo root."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def prepare() -> None:
    """Point Django at the sample project and make it and asoq importable from a fresh clone."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_project.settings")
    for folder in (HERE, HERE.parent):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


def main() -> None:
    prepare()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
