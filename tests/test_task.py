"""The task API: decoration rules, options, argument checks, all raised where the mistake is."""

from __future__ import annotations

import datetime
import threading

import pytest

import asoq
from asoq import InvalidOptions, SerializationError, Task, TaskDefinitionError, task
from asoq import runtime as asoq_runtime
from tests import tasks


def module_level(x: int, *, y: int = 2) -> int:
    return x * y


def test_bare_and_called_forms_make_tasks_that_still_run_inline() -> None:
    bare = task(module_level)
    called = task(retries=2)(module_level)
    assert isinstance(bare, Task) and isinstance(called, Task)
    assert bare(3) == called(3, y=3) - 3 == 6
    assert bare.name == "tests.test_task:module_level"
    assert called.options.retries == 2 and bare.options.retries == 0
    assert bare.__doc__ == module_level.__doc__ and bare.__wrapped__ is module_level


def test_a_lambda_is_refused_where_it_is_decorated() -> None:
    with pytest.raises(TaskDefinitionError, match="is a lambda; a task must be a module-level"):
        task(lambda: None)


def test_a_nested_function_is_refused() -> None:
    def inner() -> None:
        pass

    with pytest.raises(TaskDefinitionError, match="inner is defined inside a function"):
        task(inner)


def test_a_method_is_refused() -> None:
    with pytest.raises(TaskDefinitionError, match="Holder.method is defined in a class"):

        class Holder:
            @task
            def method(self) -> None:
                pass


def test_a_function_of_main_is_refused_since_the_worker_never_reruns_the_script() -> None:
    def main_function() -> None:
        pass

    main_function.__qualname__ = "main_function"
    main_function.__module__ = "__main__"
    with pytest.raises(TaskDefinitionError, match="defined in __main__"):
        task(main_function)


def test_other_callables_are_refused() -> None:
    with pytest.raises(TaskDefinitionError, match="needs a function defined with def"):
        task(print)  # type: ignore[arg-type]
    with pytest.raises(TaskDefinitionError, match="already a task"):
        task(tasks.add)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "rule"),
    [
        ({"timeout": 3}, "unknown option.*'timeout'.*the options are"),
        ({"time_limit": 0}, "time_limit must be a positive number"),
        ({"time_limit": "5"}, "time_limit must be a positive number"),
        ({"retries": -1}, "retries must be a whole number >= 0"),
        ({"retries": True}, "retries must be a whole number"),
        ({"retry_backoff": -1.0}, "retry_backoff must be a number of seconds >= 0"),
        ({"countdown": float("nan")}, "countdown must be a number"),
        ({"eta": datetime.datetime(2030, 1, 1)}, "eta must be a timezone-aware datetime"),
        ({"priority": 101}, "priority must be a whole number from -100 to 100"),
        (
            {"countdown": 1, "eta": datetime.datetime.now(datetime.UTC)},
            "countdown and eta cannot both be set",
        ),
    ],
)
def test_bad_options_name_the_task_and_the_rule(options: dict[str, object], rule: str) -> None:
    with pytest.raises(InvalidOptions, match=f"task 'tests.test_task:module_level': {rule}"):
        task(**options)(module_level)  # type: ignore[call-overload]
    with pytest.raises(InvalidOptions, match=rule):
        task(module_level).using(**options)


def test_using_returns_a_changed_copy_and_leaves_the_task_alone() -> None:
    original = task(priority=5)(module_level)
    changed = original.using(countdown=3, retries=1)
    assert (changed.options.countdown, changed.options.retries, changed.options.priority) == (
        3,
        1,
        5,
    )
    assert original.options.countdown is None and original.options.retries == 0
    assert changed.name == original.name and changed(2) == 4


def test_wrong_arguments_raise_in_the_caller_before_anything_starts() -> None:
    with pytest.raises(TypeError, match="task 'tests.tasks:add': add\\(\\) missing 1 required"):
        tasks.add.delay(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="got an unexpected keyword argument 'c'"):
        tasks.add.delay(1, 2, c=3)  # type: ignore[call-arg]
    assert asoq_runtime._client is None, "a refused call must not start a worker"


def test_an_unpicklable_argument_raises_at_the_call_naming_task_and_type() -> None:
    with pytest.raises(
        SerializationError,
        match=r"task 'tests.tasks:echo': argument #0 of type "
        r"_thread.lock cannot be pickled",
    ):
        tasks.echo.delay(threading.Lock())  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="argument value of type builtins.function"):
        tasks.echo.delay(value=lambda: b"")  # type: ignore[arg-type]


def test_unknown_worker_options_are_refused() -> None:
    with pytest.raises(InvalidOptions, match="start_worker\\(\\): unknown option.*'workers'"):
        asoq.start_worker(workers=2)
    with pytest.raises(InvalidOptions, match="concurrency must be a whole number >= 1"):
        asoq.start_worker(concurrency=0)
    with pytest.raises(InvalidOptions, match="python must be the path of an interpreter"):
        asoq.start_worker(python="/nowhere/python3")
    assert asoq_runtime._client is None


def test_importing_asoq_imports_no_framework_and_starts_nothing() -> None:
    import subprocess
    import sys

    code = (
        "import sys, threading, asoq, asoq.wsgi\n"
        "assert not {'django', 'werkzeug'} & set(sys.modules), sorted(sys.modules)\n"
        "assert threading.active_count() == 1\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
