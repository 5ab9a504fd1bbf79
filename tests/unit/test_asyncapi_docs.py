"""The AsyncAPI document is generated from the schemas and the services' wiring, and kept current."""

import json
from pathlib import Path

from ops.cli import asyncapi_document
from shared.events import TOPIC_SCHEMAS

COMMITTED = Path(__file__).parents[2] / "docs" / "asyncapi.json"


def test_the_committed_document_is_what_the_code_generates():
    assert json.loads(COMMITTED.read_text()) == asyncapi_document(), "run `billing asyncapi` and commit the result"


def test_every_topic_carries_its_schema_with_every_field():
    document = asyncapi_document()
    for topic, schema in TOPIC_SCHEMAS.items():
        [channel] = [c for c in document["channels"].values() if c["address"] == topic]
        assert list(channel["messages"]) == [schema.__name__]
        properties = document["components"]["schemas"][schema.__name__]["properties"]
        assert set(properties) == set(schema.model_fields)


def test_operations_follow_the_pipeline():
    operations = asyncapi_document()["operations"]
    flow = {(name.split("_")[0], op["action"], op["channel"]["$ref"].rsplit("/", 1)[1]) for name, op in operations.items()}
    assert {
        ("rating", "receive", "usage_recorded"),
        ("rating", "send", "items_rated"),
        ("settlement", "receive", "items_rated"),
        ("settlement", "receive", "payments_received"),
        ("settlement", "send", "receivables_posted"),
        ("invoicing", "receive", "receivables_posted"),
        ("invoicing", "send", "documents_created"),
        ("payments", "receive", "documents_created"),
        ("payments", "receive", "payments_received"),
    } <= flow
