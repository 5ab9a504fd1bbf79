from shared.access.tables import metadata
from shared.db import run_migrations

run_migrations(metadata)
