"""System checks for the ``ASOQ_*`` settings, with stable ids.

=============  ==========================================================
id             reported when
=============  ==========================================================
``asoq.E001``  ``ASOQ_DEFER_UNTIL_RESPONSE`` is not a bool
``asoq.E002``  ``ASOQ_CONCURRENCY`` is not a whole number >= 1
``asoq.E003``  ``ASOQ_MAX_PENDING`` is not a whole number >= 1
``asoq.E004``  ``ASOQ_DRAIN_TIMEOUT`` is not a number of seconds >= 0
``asoq.E005``  ``ASOQ_EAGER`` is not a bool
``asoq.E006``  ``ASOQ_PYTHON`` is not a path (a string) or None
``asoq.W001``  an ``ASOQ_*`` setting ASOQ does not know (a typo, most likely)
=============  ==========================================================
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from . import conf
from .errors import InvalidOptions
from .options import WorkerOptions

# Ids are part of the API (users silence them in SILENCED_SYSTEM_CHECKS): never renumber.
_ERROR_IDS = {
    "defer_until_response": "asoq.E001",
    "concurrency": "asoq.E002",
    "max_pending": "asoq.E003",
    "drain_timeout": "asoq.E004",
    "eager": "asoq.E005",
    "python": "asoq.E006",
}


def check_settings(**kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    known = {conf.setting_name(name) for name in conf.NAMES}
    for setting in dir(settings):
        if setting.startswith(conf.PREFIX) and setting not in known:
            messages.append(
                Warning(
                    f"{setting} is not an ASOQ setting.",
                    hint=f"The ASOQ settings are {', '.join(sorted(known))}.",
                    id="asoq.W001",
                )
            )
    for name, value in conf.options().items():
        rule = _broken_rule(name, value)
        if rule:
            messages.append(Error(f"{conf.setting_name(name)}: {rule}", id=_ERROR_IDS[name]))
    return messages


def _broken_rule(name: str, value: object) -> str:
    if name == "defer_until_response":
        return "" if isinstance(value, bool) else f"must be True or False, not {value!r}."
    try:
        WorkerOptions.build({name: value})
    except InvalidOptions as error:
        return str(error).removeprefix("start_worker(): ") + "."
    return ""
