from django.urls import URLPattern, path

from virtual_numbers.views import pool_health_view

# Included at the site root before admin/, so this page sits inside the admin's URL space.
urlpatterns: list[URLPattern] = [
    path("admin/pool-health/", pool_health_view, name="pool-health"),
]
