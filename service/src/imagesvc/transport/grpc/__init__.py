"""The gRPC transport: the servicer (decode, call the core, encode), the interceptor
around every call, core errors to gRPC statuses, and the gRPC server metrics."""
