from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SettlementSettings(ServiceSettings):
    service = "settlement"
    model_config = SettingsConfigDict(env_prefix="SETTLEMENT_")

    # How often the worker's scheduler settles the on-demand runs whose cutoff has passed (periods
    # are billed when rating announces them closed); 0 turns it off (`python -m
    # services.settlement.admin run-due` does the same on demand).
    scheduler_interval_s: float = 60.0
    # The HTTP API (`python -m services.settlement.api`): cancelled orders' credits.
    api_host: str = "127.0.0.1"
    api_port: int = 8092
