"""The GoCardless webhook scheme with the I/O it needs: reading the resources its events are about.

GoCardless' events carry no amounts, so each event that moves money is mapped with the payment or
refund as GoCardless' API returns it now (services.payments.providers.gocardless maps; this reads).
If the API cannot be reached the request is refused with 503 before anything is recorded, and
GoCardless delivers it again.
"""

from __future__ import annotations

from typing import Any, Mapping

import httpx

from services.payments.providers import Notification, WebhookRefused, gocardless

# The API version every GoCardless request names; resources are read in its shape.
API_VERSION = "2015-07-06"


class GoCardlessApi:
    def __init__(self, base_url: str, access_token: str, *, timeout_s: float = 10.0) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, headers={
            "Authorization": f"Bearer {access_token}", "GoCardless-Version": API_VERSION,
            "Accept": "application/json"})

    async def resource(self, resource_type: str, resource_id: str) -> Mapping[str, Any]:
        try:
            response = await self._client.get(f"/{resource_type}/{resource_id}")
        except httpx.HTTPError as error:
            raise WebhookRefused(503, "provider_unreachable",
                                 f"GoCardless' API could not be reached for {resource_type} {resource_id}: "
                                 f"{type(error).__name__}") from None
        if response.status_code != 200:
            raise WebhookRefused(503, "provider_unreachable", f"GoCardless' API answered {response.status_code} "
                                                              f"for {resource_type} {resource_id}")
        try:
            return response.json()[resource_type]
        except (ValueError, KeyError, TypeError):
            raise WebhookRefused(503, "provider_unreachable", f"GoCardless' API answered no {resource_type} "
                                                              f"for {resource_id}") from None

    async def aclose(self) -> None:
        await self._client.aclose()


class GoCardlessScheme:
    duplicate_status = 200

    def __init__(self, api: GoCardlessApi) -> None:
        self.api = api

    async def read(self, secret: str, headers: Mapping[str, str], body: bytes, *, now: float,
                   tolerance_s: float) -> list[Notification]:
        gocardless.verify(secret, headers.get("webhook-signature"), body)
        notifications = []
        for event in gocardless.parse(body):
            needed = gocardless.resource_needed(event)
            resource = await self.api.resource(*needed) if needed else None
            notifications.append(gocardless.notification(event, resource))
        return notifications
