"""The auth server: a FastAPI app composed in :func:`keyturn.server.app.create_app`."""
