"""Access: the operators, API tokens and sessions every HTTP surface checks (see shared.access),
their administration (`python -m services.access.admin`) and the access database's migrations."""
