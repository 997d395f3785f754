# Minimal image for tetrapipe (the operations issue completes it: pinned lock, multi-stage, probes).
FROM python:3.11-slim
RUN useradd --uid 10001 --create-home tetrapipe
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY transforms ./transforms
COPY sinks ./sinks
COPY config ./config
RUN pip install --no-cache-dir . && rm -rf /src
USER 10001
ENTRYPOINT ["tetrapipe"]
CMD ["run"]
