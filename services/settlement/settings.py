from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SettlementSettings(ServiceSettings):
    service = "settlement"
    model_config = SettingsConfigDict(env_prefix="SETTLEMENT_")
