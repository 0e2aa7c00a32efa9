from django.urls import path

from webhooks import sms_views

# /webhooks/sms/status and /webhooks/sms/inbound (delivery receipts, inbound SMS).
urlpatterns = [
    path("status", sms_views.sms_status, name="webhook-sms-status"),
    path("inbound", sms_views.sms_inbound, name="webhook-sms-inbound"),
]
