from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class PaymentsSettings(ServiceSettings):
    service = "payments"
    model_config = SettingsConfigDict(env_prefix="PAYMENTS_")

    # The secret each provider signs its webhooks with, as JSON: PAYMENTS_WEBHOOK_SECRETS='{"acme-pay": "..."}'.
    # The default is for the demo only; a provider not listed is refused.
    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=lambda: {"demo-psp": SecretStr("demo-psp-webhook-secret")}
    )
    # How far a webhook's timestamp may be from the bridge's clock, either way.
    webhook_tolerance_s: float = 300.0
    # Larger bodies are refused unread; a payment webhook is a few hundred bytes.
    webhook_max_body_bytes: int = 64 * 1024
    # Where `python -m services.payments.bridge` listens.
    bridge_host: str = "127.0.0.1"
    bridge_port: int = 8090
