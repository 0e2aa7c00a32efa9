#!/bin/sh
# The image's entry point. A Procfile process name (web, worker, beat, release) runs that
# line of the Procfile, so a container and a host without containers run the same
# commands; nothing else runs migrations (only `release` does, once per release).
# Anything else runs as given: `docker run IMAGE python manage.py shell`.
set -eu

if [ "$#" -eq 0 ]; then
  set -- web
fi

if [ "$#" -eq 1 ]; then
  case "$1" in
    web | worker | beat | release)
      line=$(sed -n "s/^$1:[[:space:]]*//p" Procfile)
      if [ -z "$line" ]; then
        echo "entrypoint: the Procfile has no '$1' line" >&2
        exit 64
      fi
      echo "entrypoint: $1: $line" >&2
      # eval: the line may use the environment, e.g. ${WORKER_CONCURRENCY:-4}.
      eval "exec $line"
      ;;
  esac
fi

exec "$@"
