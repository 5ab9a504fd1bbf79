"""Rating worker: `faststream run services.rating.app:app [--workers N]`."""

from services.rating import handlers
from services.rating.settings import RatingSettings
from services.rating.tables import messaging
from shared import topics
from shared.events import UsageRecorded
from shared.messaging import ServiceRuntime

runtime = ServiceRuntime.create(
    "rating", RatingSettings(), messaging, publishes=[topics.ITEMS_RATED, topics.CONTRACTS_CHANGED]
)
runtime.subscribe(topics.USAGE_RECORDED, UsageRecorded, handlers.rate_usage)
app = runtime.app()
