from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class InvoicingSettings(ServiceSettings):
    service = "invoicing"
    model_config = SettingsConfigDict(env_prefix="INVOICING_")

    payment_terms_days: int = 14
