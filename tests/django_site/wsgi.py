from django.core.wsgi import get_wsgi_application

from asoq.wsgi import AsoqMiddleware

application = AsoqMiddleware(get_wsgi_application())
