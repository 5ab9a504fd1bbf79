"""AsyncAPI 3.0 from the code: channels and payloads from the event schemas, operations from
what each service runtime subscribes to and declares it publishes."""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import BaseModel

from shared import topics
from shared.events import TOPIC_SCHEMAS
from shared.runtime import ServiceRuntime

REF_TEMPLATE = "#/components/schemas/{model}"


def _channel_id(topic: str) -> str:
    return topic.replace(".", "_").replace("-", "_")


def _schemas(models: Sequence[type[BaseModel]]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF_TEMPLATE, mode="serialization")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return dict(sorted(schemas.items()))


def document(runtimes: Sequence[ServiceRuntime], version: str) -> dict[str, Any]:
    channels = {
        _channel_id(topic): {
            "address": topic,
            "description": (schema.__doc__ or "").strip(),
            "messages": {schema.__name__: {"$ref": f"#/components/messages/{schema.__name__}"}},
        }
        for topic, schema in TOPIC_SCHEMAS.items()
    }
    messages = {
        schema.__name__: {
            "name": schema.__name__,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{schema.__name__}"},
        }
        for schema in TOPIC_SCHEMAS.values()
    }
    operations: dict[str, Any] = {}
    for runtime in runtimes:
        for subscription in runtime.subscriptions:
            operations[f"{runtime.name}_receives_{_channel_id(subscription.topic)}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{_channel_id(subscription.topic)}"},
                "summary": f"consumer group {subscription.group_id}",
            }
        for topic in sorted(runtime.publishes | {topics.DEAD_LETTERS}):
            operations[f"{runtime.name}_sends_{_channel_id(topic)}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{_channel_id(topic)}"},
                "summary": "through the transactional outbox" if topic != topics.DEAD_LETTERS else "dead letters",
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Usage billing pipeline",
            "version": version,
            "description": "Topics between rating, settlement, invoicing and payments. "
            "Every message is JSON, keyed by contract id; amounts are decimal strings.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": _schemas(list(TOPIC_SCHEMAS.values()))},
    }
