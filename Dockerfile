# Liftwatch runtime image: one image for every `liftwatch` command
# (docker-compose.yml runs `db migrate` and `ingest` from it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

# Unprivileged runtime user (no home, no login shell).
RUN groupadd --system --gid 10001 liftwatch \
 && useradd --system --uid 10001 --gid liftwatch --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin liftwatch

# psycopg[binary], orjson and pydantic-core ship manylinux wheels: no compiler needed.
# The source tree is only needed to build the package; .dockerignore keeps .venv,
# .git, caches and deploy/secrets out of the build context.
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir . \
 && rm -rf /src

WORKDIR /
USER liftwatch:liftwatch

# Prometheus metrics of `liftwatch ingest` (LIFTWATCH_METRICS_PORT).
EXPOSE 9464

ENTRYPOINT ["liftwatch"]
CMD ["--help"]
