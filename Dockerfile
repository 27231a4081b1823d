FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PTB_TIMEDELTA=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install . && useradd --create-home --uid 10001 ringwatch \
    && mkdir -p /data && chown ringwatch /data

USER ringwatch
# The database lives on a volume; the config is mounted read-only at /config/config.toml
# with state_dir = "/data".
VOLUME ["/data"]
ENV RINGWATCH_CONFIG=/config/config.toml
# Healthy while the last good poll is recent and no message waits too long (docs/deployment.md,
# "Is it alive?"); `|| exit 1` because Docker reserves the exit code 2 (no database yet).
HEALTHCHECK --interval=1m --timeout=10s --start-period=2m CMD ringwatch health || exit 1
ENTRYPOINT ["ringwatch"]
CMD ["run"]
