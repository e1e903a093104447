"""The HTTP port: the uvicorn server in the gRPC event loop, its TLS and authentication,
the observability middleware and request metrics, and the operational routes (/healthz,
/readyz, /metrics) beside the REST gateway's."""
