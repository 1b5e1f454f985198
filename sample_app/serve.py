"""Serve the sample app on werkzeug's development server, with its reloader and threads.

::

    python sample_app/serve.py [--host 127.0.0.1] [--port 8000] [--no-reload]

Run ``python sample_app/manage.py migrate`` first (``make run`` does both). ``--port 0`` lets
the OS pick a free port; werkzeug prints it in its "Running on" line.

With the reloader this script runs twice: as a watcher process, and as the serving child that
the watcher restarts on every code change. Only the serving child gets an asoq worker, on its
first request.
"""

from __future__ import annotations

import argparse
import logging

from manage import prepare
from werkzeug.serving import is_running_from_reloader, run_simple


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--no-reload", action="store_true", help="no restart on code changes")
    options = parser.parse_args()

    prepare()
    from sample_project.wsgi import application

    # The page polls /runs/ every second: those lines would drown asoq's in the console.
    logging.getLogger("werkzeug").addFilter(lambda record: "GET /runs/" not in record.getMessage())
    if not is_running_from_reloader():
        where = f"http://{options.host}:{options.port}/" if options.port else "the URL below"
        print(f"ASOQ sample app: open {where} (Ctrl-C to stop)", flush=True)
    run_simple(
        options.host, options.port, application, use_reloader=not options.no_reload, threaded=True
    )


if __name__ == "__main__":
    main()
