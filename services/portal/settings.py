import os

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import local_database_url

SOURCES = ("rating", "settlement", "invoicing", "payments")
DEFAULT_RATING_API_URL = "http://127.0.0.1:8091"
DEFAULT_SETTLEMENT_API_URL = "http://127.0.0.1:8092"
DEFAULT_PAYMENTS_API_URL = "http://127.0.0.1:8090"  # the bridge: payments' HTTP app


class PortalSettings(BaseSettings):
    """Where the portal reads from (each service's database, read-only) and the APIs its actions call.

    A database URL not set as PORTAL_<SERVICE>_DATABASE_URL is the one that service itself uses:
    its <SERVICE>_DATABASE_URL, else the local stack's database of that name.
    """

    model_config = SettingsConfigDict(env_prefix="PORTAL_")

    rating_database_url: str = ""
    settlement_database_url: str = ""
    invoicing_database_url: str = ""
    payments_database_url: str = ""
    rating_api_url: str = DEFAULT_RATING_API_URL
    settlement_api_url: str = DEFAULT_SETTLEMENT_API_URL
    payments_api_url: str = DEFAULT_PAYMENTS_API_URL

    @model_validator(mode="after")
    def _default_to_the_services_own(self) -> "PortalSettings":
        for service in SOURCES:
            field = f"{service}_database_url"
            if not getattr(self, field):
                own = os.environ.get(f"{service.upper()}_DATABASE_URL")
                setattr(self, field, own or local_database_url(service))
        return self

    def database_urls(self) -> dict[str, str]:
        return {service: getattr(self, f"{service}_database_url") for service in SOURCES}
