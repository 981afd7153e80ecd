"""The domain: accounts, sessions, keys and authorization. No HTTP, no SQL driver."""
