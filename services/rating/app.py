"""Rating worker: `faststream run services.rating.app:app [--workers N]`."""

from services.rating import handlers
from services.rating.scheduler import period_closer
from services.rating.settings import RatingSettings
from services.rating.tables import messaging
from shared import topics
from shared.events import UsageRecorded
from shared.runtime import ServiceRuntime

settings = RatingSettings()
runtime = ServiceRuntime.create(
    "rating", settings, messaging, publishes=[topics.ITEMS_RATED, topics.CONTRACTS_CHANGED]
)
runtime.subscribe_batch(topics.USAGE_RECORDED, UsageRecorded, handlers.rate_usage)
app = runtime.app()
period_close = period_closer(runtime.database, settings.period_close_interval_s, settings.close_grace_days)


@app.after_startup
async def _start_period_close() -> None:
    period_close.start()  # on the worker's event loop (FastStream runs plain functions in a thread)


app.on_shutdown(period_close.stop)
