from demo import views
from django.urls import path

urlpatterns = [
    path("", views.index, name="index"),
    path("enqueue/", views.enqueue, name="enqueue"),
    path("runs/", views.runs, name="runs"),
]
