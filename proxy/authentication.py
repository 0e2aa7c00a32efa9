"""API authentication: ``Authorization: Bearer <key>``, one service per key."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from proxy.api_keys import api_key_use
from proxy.models import Service


class ServiceKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates a request as a service; ``request.auth`` is the service."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Service] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <API key>'.")
        row = api_key_use(key=key.strip())
        if row is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return (None, row.service)

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class IsService(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, Service)
