"""ASOQ's Django settings, read on access (so ``override_settings`` just works).

One rule maps settings onto keyword arguments: ``ASOQ_<NAME>`` is the ``<name>`` argument of
``AsoqMiddleware`` and ``start_worker()``; an argument passed in code wins over the setting.

=============================  ==============  =========
setting                        type            default
=============================  ==============  =========
``ASOQ_DEFER_UNTIL_RESPONSE``  ``bool``        ``False``
``ASOQ_CONCURRENCY``           ``int`` >= 1    ``1``
``ASOQ_MAX_PENDING``           ``int`` >= 1    ``10000``
``ASOQ_DRAIN_TIMEOUT``         seconds >= 0    ``10.0``
``ASOQ_EAGER``                 ``bool``        ``False``
``ASOQ_PYTHON``                path or None    ``None``
=============================  ==============  =========
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from .options import WORKER_OPTION_NAMES

PREFIX = "ASOQ_"
NAMES = ("defer_until_response", *sorted(WORKER_OPTION_NAMES))


def setting_name(name: str) -> str:
    return PREFIX + name.upper()


def options() -> dict[str, Any]:
    """The keyword arguments the ``ASOQ_*`` settings give, only those that are set."""
    found = {}
    for name in NAMES:
        value = getattr(settings, setting_name(name), _UNSET)
        if value is not _UNSET:
            found[name] = value
    return found


_UNSET = object()
