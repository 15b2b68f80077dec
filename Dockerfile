# One image for the operator (Deployment) and the sidecars (PostgreSQL Pods, recovery Jobs):
# `barman-cloud-plugin operator | instance | restore | healthcheck unix`.
#
#   docker build -t barman-cloud-plugin:0.1.0 .
#
# Runs as uid/gid 26 (the postgres user of CloudNativePG's images, so the sidecar shares PGDATA
# and the plugin socket with PostgreSQL) on a read-only root filesystem: every module, ours and
# the standard library's, is compiled to bytecode here, because a read-only interpreter would
# otherwise recompile them at every start (upstream plugin-barman-cloud #735: slow archiving).
# Checked by hadolint in `make test` (tests/packaging/test_dockerfile.py); nothing builds it
# there, so it stays plain.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY barman_cloud/ barman_cloud/
COPY barman_cloud_cli/ barman_cloud_cli/
COPY operator/ operator/
COPY plugin_grpc/ plugin_grpc/
RUN python -m venv /opt/plugin \
    && /opt/plugin/bin/pip install --no-compile . \
    && /opt/plugin/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="barman-cloud-plugin" \
      org.opencontainers.image.description="Native asyncio Barman Cloud plugin for CloudNativePG (CNPG-I): operator and sidecars" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 26 postgres \
    && useradd --system --uid 26 --gid 26 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin postgres
COPY --from=build /opt/plugin /opt/plugin
# Bytecode for everything, checked by hash rather than by modification time: the files never
# change in the image, and a copied file's time cannot invalidate it.
RUN python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash \
        /opt/plugin "$(python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')" \
    && /opt/plugin/bin/barman-cloud-plugin --version
ENV PATH=/opt/plugin/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 26:26
ENTRYPOINT ["barman-cloud-plugin"]
CMD ["--help"]
