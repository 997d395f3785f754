# syntax=docker/dockerfile:1
# tetrapipe container image.
#
#   docker build -t tetrapipe:0.1.0 .
#   docker run --rm -i --read-only tetrapipe:0.1.0 < tests/data/docs-examples.jsonl
#
# Two stages: the builder compiles the wheel and installs the locked runtime dependencies
# (requirements.lock, hash-checked; pytricia ships only an sdist, hence the C compiler) into
# /opt/venv; the final stage copies that venv alone: no compiler, no pip cache, no sources.
#
# The RUN instruction(s) between "image-check: begin" and "image-check: end" are executed verbatim by
# .ci/image-check.sh in a clean venv (with /src, /dist and /opt/venv mapped to temp dirs), so CI
# proves this install path without a Docker engine. Keep them self-contained shell commands.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Debian package versions move with the base image's point releases; pinning them would break
# every rebuild, and nothing from apt reaches the final stage.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY tetrapipe ./tetrapipe
COPY config ./config

# image-check: begin
RUN python -m venv /opt/venv \
 && python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist /src \
 && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r /src/requirements.lock \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps /dist/tetrapipe-*.whl
# image-check: end

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="tetrapipe" \
      org.opencontainers.image.description="Tags Cilium Tetragon events with the observability policy library's categories, classifies egress by CIDR, and forwards them (stdout, Kafka, OTLP)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# No user home and no writes at runtime: bytecode is compiled at install time in the builder,
# so the image runs with a read-only root filesystem. The only writable path a deployment needs
# is the checkpoint directory of the file source (/var/lib/tetrapipe, a volume).
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1

RUN groupadd --system --gid 10001 tetrapipe \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin tetrapipe \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/tetrapipe

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /var/lib/tetrapipe
VOLUME ["/var/lib/tetrapipe"]

# With --metrics-port 9090 (as the manifests run it): /metrics, /livez, /readyz. Logs are JSON lines
# (stderr is not a terminal in a container); SIGTERM drains and commits, SIGHUP reloads the config.
EXPOSE 9090

ENTRYPOINT ["tetrapipe"]
CMD ["run"]
