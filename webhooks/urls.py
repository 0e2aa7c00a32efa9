from django.urls import include, path

from webhooks import views

urlpatterns = [
    path("answer", views.answer, name="webhook-answer"),
    path("event", views.event, name="webhook-event"),
    path("fallback", views.fallback, name="webhook-fallback"),
    path("input", views.pin_input, name="webhook-input"),
    path("recording", views.recording, name="webhook-recording"),
    path("transcription", views.transcription, name="webhook-transcription"),
    path("record-notice", views.record_notice, name="webhook-record-notice"),
    path("sms/", include("webhooks.sms_urls")),
]
