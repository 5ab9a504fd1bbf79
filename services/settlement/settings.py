from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SettlementSettings(ServiceSettings):
    service = "settlement"
    model_config = SettingsConfigDict(env_prefix="SETTLEMENT_")

    # How often the worker's scheduler settles the billing periods that have ended; 0 turns it off
    # (`python -m services.settlement.admin run-due` still does the same on demand).
    scheduler_interval_s: float = 60.0
