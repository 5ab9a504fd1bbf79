"""The customer billing portal: a read side over the services' own stores, and the page billing users work in.

It owns no tables. It reads each service's database with read-only SQL of its own (`sources/`,
one module per service, never importing that service's code), and acts the way every other
producer does: usage and billing-run requests are published to their topics, purchases and
cancellations go to rating's HTTP API. `uvicorn services.portal.app:app`.
"""
