# One image for the operator and the sidecars. A first version: issue #9 completes it (labels,
# hadolint in `make test`, the chart's security context). No container engine runs where this
# project is developed, so it is kept simple enough to be obviously right.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY barman_cloud/ barman_cloud/
COPY barman_cloud_cli/ barman_cloud_cli/
COPY operator/ operator/
COPY plugin_grpc/ plugin_grpc/
# Bytecode compiled now: the sidecars run with a read-only root filesystem.
RUN python -m venv /opt/plugin \
    && /opt/plugin/bin/pip install --no-cache-dir . \
    && /opt/plugin/bin/python -m compileall -q /opt/plugin

FROM python:3.11-slim-bookworm
COPY --from=build /opt/plugin /opt/plugin
ENV PATH=/opt/plugin/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# PostgreSQL's uid/gid in CloudNativePG images: the sidecar shares the socket and PGDATA with it.
USER 26:26
ENTRYPOINT ["barman-cloud-plugin"]
