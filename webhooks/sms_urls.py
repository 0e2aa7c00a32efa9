from django.urls import path

from webhooks import sms

# /webhooks/sms/status and /webhooks/sms/inbound (delivery receipts, inbound SMS).
urlpatterns = [
    path("status", sms.sms_status, name="webhook-sms-status"),
    path("inbound", sms.sms_inbound, name="webhook-sms-inbound"),
]
