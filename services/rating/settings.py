from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class RatingSettings(ServiceSettings):
    service = "rating"
    model_config = SettingsConfigDict(env_prefix="RATING_")

    # How often the worker closes the billing periods that have ended (charging recurring fees,
    # topping up minimums); 0 turns it off (`python -m services.rating.admin close-periods` does
    # the same on demand).
    period_close_interval_s: float = 60.0
    # A period is closed this many days after it ended, so usage reported a little late still
    # lands in its own period instead of being billed late.
    close_grace_days: int = 3
    # Usage arrives in bursts of small messages; a batch's events of one period become one item, so
    # the bigger the batch, the fewer items and statements per event (a quiet topic still gives
    # small batches after batch_timeout_ms).
    batch_max_records: int = 5000
    # aiokafka's default: an items.rated of a busy line names up to 1,000 events (about 40 KB), and
    # with 256 KB a partition the worker's peak RSS rose by 23-34 MB (to 211-222 MB in the benchmark).
    outbox_partition_batch_bytes: int = 16 * 1024
    # The HTTP API (`python -m services.rating.api`).
    api_host: str = "127.0.0.1"
    api_port: int = 8091
