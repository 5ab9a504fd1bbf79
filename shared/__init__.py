"""The schema package every service shares: topics, event schemas, money, settings and plumbing."""
