"""ASGI apps served by the benchmark's Python peers (loaded by uvicorn/granian as ``bench.apps.*``)."""
