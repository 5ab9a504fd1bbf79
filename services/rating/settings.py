from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class RatingSettings(ServiceSettings):
    service = "rating"
    model_config = SettingsConfigDict(env_prefix="RATING_")
