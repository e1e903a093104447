"""The Docker Engine behind the core's DockerPort: the docker-py adapter (the only module
that imports docker), the table from Engine error messages to core errors, and the
decorator that measures every Engine call."""
