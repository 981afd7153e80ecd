"""API keys: create, list, use by header and by exchange, scope limits, revoke."""
