from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class PaymentsSettings(ServiceSettings):
    service = "payments"
    model_config = SettingsConfigDict(env_prefix="PAYMENTS_")
