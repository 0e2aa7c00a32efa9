from django.urls import path

from harness import views

app_name = "sandbox"

urlpatterns = [
    path("", views.sandbox_home, name="home"),
    path("sms", views.sandbox_sms, name="sms"),
    path("failures", views.sandbox_failure, name="failure"),
    path("reset", views.sandbox_clear, name="reset"),
]
