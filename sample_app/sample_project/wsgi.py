"""The WSGI application: Django wrapped in ASOQ's middleware, the one line ASOQ asks for.

The worker starts on the first request in the serving process, not here: this module is also
imported by the reloader's watcher process, which must not get one.
"""

from django.core.wsgi import get_wsgi_application

from asoq.wsgi import AsoqMiddleware

# defer_until_response=True holds .delay() calls too until the response is closed, so no task
# competes with the request that enqueued it.
application = AsoqMiddleware(get_wsgi_application(), defer_until_response=True)
