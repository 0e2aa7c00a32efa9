# The product's image (docs/operations.md, "Container image").
#   docker build -t masked-calling .
#   docker run IMAGE [web | worker | beat | release | any command]
# Settings come from the environment only (README, "Configuration"); web listens on $PORT.
FROM python:3.11-slim-trixie

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PORT=8000

# Dependencies from the lock file alone: every package pinned and its hash checked,
# wheels only, so nothing is compiled and no compiler is needed. This layer changes
# only when the lock does.
COPY requirements.lock /tmp/requirements.lock
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir --require-hashes --only-binary=:all: -r /tmp/requirements.lock \
 && rm /tmp/requirements.lock

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-log-init --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin app

WORKDIR /app
COPY . .

# The code stays root's and read-only to the app; var/ (local media: recordings) is the
# one writable directory. Static files are collected here, at build: the settings that
# must be set with DJANGO_DEBUG off get throwaway values, nothing secret is needed and
# none of these values stays in the image's environment.
RUN DJANGO_DEBUG=false \
    DJANGO_SECRET_KEY=build-only-not-a-secret \
    VONAGE_PROVIDER=sandbox \
    VONAGE_SIGNATURE_SECRET=build-only-not-a-secret \
      python manage.py collectstatic --noinput --verbosity 0 \
 && python -m compileall -q config proxy telephony virtual_numbers webhooks \
 && mkdir -p var/media \
 && chown -R app:app var

# Numeric, so a runtime that checks runAsNonRoot can tell without the image's passwd.
USER 10001:10001
EXPOSE 8000
# /health/live: 200 while the process serves (DESIGN.md, "Health").
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "docker/healthcheck.py"]
ENTRYPOINT ["/bin/sh", "/app/docker/entrypoint.sh"]
CMD ["web"]
