import os

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.payments.providers import adyen, standard
from shared.settings import ServiceSettings

# Providers with a webhook format of their own, each at /webhooks/<name>; the other names are
# configured with a scheme below.
OWN_FORMATS = ("stripe", "gocardless", "adyen")


class PaymentsSettings(ServiceSettings):
    service = "payments"
    # Secrets come from the environment or, where PAYMENTS_SECRETS_DIR names a directory (a mounted
    # Kubernetes Secret), from files named like the variables (e.g. PAYMENTS_STRIPE_WEBHOOK_SECRET).
    # They are SecretStr, so they are never printed or logged.
    # hide_input_in_errors: a refused setting must not print the secrets beside it.
    model_config = SettingsConfigDict(env_prefix="PAYMENTS_", secrets_dir=os.environ.get("PAYMENTS_SECRETS_DIR"),
                                      hide_input_in_errors=True)

    # The generic format's providers and the secret each signs its webhooks with, as JSON:
    # PAYMENTS_WEBHOOK_SECRETS='{"acme-pay": "..."}'. The default is for the demo only.
    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=lambda: {"demo-psp": SecretStr("demo-psp-webhook-secret")}
    )
    # Providers and internal tools that sign the Standard Webhooks way, name -> "whsec_<base64>".
    standard_webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    # /webhooks/stripe: the endpoint's signing secret (whsec_...), from Stripe's dashboard.
    stripe_webhook_secret: SecretStr | None = None
    # /webhooks/gocardless: the webhook endpoint's secret, and the API access token (read-only is
    # enough) with which the bridge reads the payments and refunds GoCardless' events are about.
    gocardless_webhook_secret: SecretStr | None = None
    gocardless_access_token: SecretStr | None = None
    gocardless_api_url: str = "https://api.gocardless.com"
    # /webhooks/adyen: the HMAC key (hex) of the standard webhook, from Adyen's Customer Area.
    adyen_hmac_key: SecretStr | None = None
    # How far a webhook's timestamp may be from the bridge's clock, either way.
    webhook_tolerance_s: float = 300.0
    # Larger bodies are refused unread; a payment webhook is a few hundred bytes, a GoCardless or
    # Adyen batch a few dozen kilobytes.
    webhook_max_body_bytes: int = 256 * 1024
    # Where `python -m services.payments.bridge` listens.
    bridge_host: str = "127.0.0.1"
    bridge_port: int = 8090

    @field_validator("stripe_webhook_secret", "gocardless_webhook_secret", "gocardless_access_token", "adyen_hmac_key",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An empty variable (compose's ${VAR:-}) must not configure a provider whose requests anyone could sign.
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _one_scheme_per_provider(self) -> "PaymentsSettings":
        named_twice = (set(self.webhook_secrets) & set(self.standard_webhook_secrets)) | (
            set(OWN_FORMATS) & (set(self.webhook_secrets) | set(self.standard_webhook_secrets)))
        if named_twice:
            raise ValueError(f"provider(s) {', '.join(sorted(named_twice))} configured with two webhook schemes")
        empty = [name for name, secrets in (("PAYMENTS_WEBHOOK_SECRETS", self.webhook_secrets),
                                            ("PAYMENTS_STANDARD_WEBHOOK_SECRETS", self.standard_webhook_secrets))
                 for provider, secret in secrets.items() if not secret.get_secret_value().strip()]
        if empty:
            raise ValueError(f"{', '.join(sorted(set(empty)))} give a provider an empty secret")
        # A malformed key is refused at start, not on the provider's first webhook.
        for secret in self.standard_webhook_secrets.values():
            standard.signing_key(secret.get_secret_value())
        if self.adyen_hmac_key is not None:
            adyen.signing_key(self.adyen_hmac_key.get_secret_value())
        if (self.gocardless_webhook_secret is None) != (self.gocardless_access_token is None):
            raise ValueError("GoCardless needs both PAYMENTS_GOCARDLESS_WEBHOOK_SECRET and "
                             "PAYMENTS_GOCARDLESS_ACCESS_TOKEN")
        return self
