"""The REST gateway: grpc-gateway's JSON wire format in front of the gRPC servicer
(routes from the proto's google.api.http annotations, JSON and query decoding, core
errors to HTTP statuses)."""
