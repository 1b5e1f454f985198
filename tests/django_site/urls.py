from django.urls import path

from . import views

urlpatterns = [
    path("note", views.note),
    path("notes", views.notes),
    path("options", views.options),
    path("connections", views.connections),
    path("file", views.file),
    path("enqueue", views.enqueue),
]
