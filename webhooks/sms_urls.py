from django.urls import URLPattern

# /webhooks/sms/status and /webhooks/sms/inbound (delivery receipts, inbound SMS).
urlpatterns: list[URLPattern] = []
