"""Adapters from the domain's ports to SQL (SQLite, PostgreSQL) and Redis."""
