"""The service core: image operations independent of gRPC, HTTP and docker-py."""
