"""Who may see and change billing data, and the record of who did.

Every HTTP surface (except the webhook bridge's signed provider routes and health/metrics) and
every operator command that changes data asks this package who is calling: a person signed in
to the portal (a session) or a machine client with an API token. Both are opaque secrets whose
SHA-256 alone is kept in the access database, so a leaked database row signs in nobody and a
revoked one is refused on the next request.

The audit trail is written by the service that makes the change, in the same transaction as the
change and its outgoing events: no change without its record, no record of a change rolled back.
"""
