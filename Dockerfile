# imagesvc: the gRPC + REST service, as a small non-root image (docs/container-image.md).
#
#   docker build -t imagesvc:0.1.0 .
#   docker run -d --name imagesvc -p 50051:50051 -p 8080:8080 \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v "$PWD/secrets:/etc/imagesvc:ro" -e IMAGESVC_TOKENS_FILE=/etc/imagesvc/tokens.json \
#     imagesvc:0.1.0        # add TLS beyond one machine: docs/security.md
#
# Plain Dockerfile syntax: the classic builder of Engine 20.10 builds it as well as
# BuildKit (no RUN --mount, no heredocs). The base image is a build argument; any Debian
# based image with python3 >= 3.11 and its venv module works (python:3.12-slim, or the
# test's debootstrapped bookworm, whose python3 is /usr/bin/python3: hence `python3`).

ARG BASE_IMAGE=python:3.12-slim

# --------------------------------------------------------------------------- builder
# A virtualenv with the service and its runtime dependencies. Every dependency has
# binary wheels, so no compiler is needed (--only-binary refuses sdists); only the
# service itself is built, from this context, by its pure-Python setuptools backend.
FROM ${BASE_IMAGE} AS builder

# Where pip finds packages: PyPI by default; a mirror, a wheelhouse or an offline
# --no-index install through these (the image test uses a loopback wheelhouse). They
# exist only in this stage: the final image's history does not record them. Still,
# never put a password in an index URL here: the builder stage stays in the build cache.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ARG PIP_TRUSTED_HOST
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ONLY_BINARY=:all: \
    PIP_ROOT_USER_ACTION=ignore

RUN python3 -m venv /opt/imagesvc
WORKDIR /src
# Only what the package build reads: the sources, its metadata and its readme.
COPY pyproject.toml README.md ./
COPY service/src service/src
# pip compiles the .pyc files here, so the read-only final image never writes them.
# pip and setuptools leave the venv afterwards: nothing installs at run time.
RUN /opt/imagesvc/bin/python -m pip install /src \
    && /opt/imagesvc/bin/python -m pip uninstall --yes setuptools wheel pip \
    && /opt/imagesvc/bin/imagesvc --help >/dev/null

# --------------------------------------------------------------------------- final
# The base image plus the venv: it adds no compiler, make, pip, pip cache or other build
# tool to the base, and no sources or build arguments of the builder stage.
FROM ${BASE_IMAGE}

ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=
ARG CREATED=
# Group id of the Docker socket the service talks to, given to its user as a
# supplementary group. 2375 is the docker group of the docker:dind image (the Helm
# chart's sidecar); for a host's socket pass --build-arg DOCKER_GID="$(stat -c %g
# /var/run/docker.sock)", or keep the image and add the group at run time with
# `docker run --group-add <gid>` (Kubernetes: securityContext.supplementalGroups).
ARG DOCKER_GID=2375

LABEL org.opencontainers.image.title="imagesvc" \
      org.opencontainers.image.description="Manage the images of a Docker daemon over gRPC and REST" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# A fixed numeric user and group (10001), so Kubernetes' runAsNonRoot can check it, and
# membership of the socket's group (reused when the base already has that gid).
# (--no-log-init: no sparse lastlog entry for a high uid.)
RUN groupadd --gid 10001 imagesvc \
    && useradd --uid 10001 --gid imagesvc --no-create-home --no-log-init \
        --home-dir /nonexistent --shell /usr/sbin/nologin imagesvc \
    && socket_group="$(getent group "${DOCKER_GID}" | cut -d: -f1)" \
    && if [ -z "${socket_group}" ]; then \
        socket_group=docker-socket && groupadd --gid "${DOCKER_GID}" "${socket_group}"; \
    fi \
    && usermod --append --groups "${socket_group}" imagesvc

COPY --from=builder /opt/imagesvc /opt/imagesvc

# Listen on every interface of the container. Without authentication the server refuses
# to (it says how to fix it): give it --tokens-file and/or --tls-client-ca-file (TLS:
# --tls-cert-file, --tls-key-file), or, behind something that authenticates callers,
# --insecure-allow-unauthenticated. See docs/security.md.
# Running calls get 8 s on SIGTERM (the server's own default is 20 s): `docker stop` and
# compose kill after 10 s, so the drain ends and the server exits 0 before that, and a
# call still running gets a clean UNAVAILABLE instead of a torn connection. Give more
# time on both sides together (`docker stop -t 30` with
# IMAGESVC_SHUTDOWN_GRACE_SECONDS=25; the Helm chart sets its own).
ENV PATH=/opt/imagesvc/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IMAGESVC_GRPC_ADDRESS=0.0.0.0:50051 \
    IMAGESVC_HTTP_ADDRESS=0.0.0.0:8080 \
    IMAGESVC_SHUTDOWN_GRACE_SECONDS=8

WORKDIR /opt/imagesvc
# USER as a bare uid: runc then adds the supplementary groups /etc/group lists for it.
USER 10001
# gRPC (ImageService, health, reflection); HTTP (REST, /metrics, /healthz, /readyz).
EXPOSE 50051 8080

# Readiness through gRPC health ("" follows the Docker daemon; see imagesvc/healthcheck.py
# for why), with the server's own address and TLS settings. Its 3 s timeout answers first.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["imagesvc", "healthcheck"]

# The server is PID 1: it handles SIGTERM itself (drains for --shutdown-grace-seconds,
# 8 s here, see above) and has no children to reap, so no init needed.
# Arguments are serve flags: `docker run IMAGE --tokens-file ...`, `docker run IMAGE --help`.
ENTRYPOINT ["imagesvc", "serve"]
