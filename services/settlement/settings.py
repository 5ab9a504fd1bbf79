from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SettlementSettings(ServiceSettings):
    service = "settlement"
    model_config = SettingsConfigDict(env_prefix="SETTLEMENT_")

    # How often the worker's scheduler settles the on-demand runs whose cutoff has passed (periods
    # are billed when rating announces them closed); 0 turns it off (`python -m
    # services.settlement.admin run-due` does the same on demand).
    scheduler_interval_s: float = 60.0
    # Rated items wait in settlement for their billing run, nobody waits on their arrival: a fetch
    # may wait this long for a fuller batch. At 1,000 items/s that made settlement's intake take
    # 13 % of a core instead of 31 %, which the latency-bound stages before it get instead.
    fetch_linger_ms: int = 200
    # A billing run waits at most this long for settlement to apply the items rating published
    # before the run was requested (handlers.billing_runs); then it is parked and re-driven.
    run_waits_for_rated_s: float = 10.0
    # The HTTP API (`python -m services.settlement.api`): cancelled orders' credits.
    api_host: str = "127.0.0.1"
    api_port: int = 8092
