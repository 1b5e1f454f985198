"""System checks for the ``ASOQ_*`` settings, with stable ids.

- ``asoq.E001`` to ``asoq.E006``: a setting has a value outside its rule (one id per setting).
- ``asoq.W001``: an ``ASOQ_*`` setting that ASOQ does not know (a typo, most likely).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from . import conf
from .errors import InvalidOptions
from .options import WorkerOptions

_ERROR_IDS = {name: f"asoq.E{number:03d}" for number, name in enumerate(conf.NAMES, start=1)}


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
