#!/usr/bin/env bash
# Container entrypoint for the backend image.
#
#   docker-entrypoint.sh                         start the api-gateway
#   docker-entrypoint.sh api-gateway [ARGS...]   start the api-gateway
#   docker-entrypoint.sh agents [ARGS...]        start the agents worker
#   docker-entrypoint.sh help | --help | -h      print usage
#   docker-entrypoint.sh COMMAND [ARGS...]       run any other command as given
#
# Services are started with `exec`, so they replace this shell and receive
# SIGTERM/SIGINT directly.
set -euo pipefail

readonly PROG="docker-entrypoint"

usage() {
  cat <<'USAGE'
Usage: docker-entrypoint.sh [SERVICE] [ARGS...]
       docker-entrypoint.sh COMMAND [ARGS...]

Services:
  api-gateway   API gateway (the default); listens on $PORT, default 8000
  agents        agents worker; listens on $PORT, default 8001

Arguments that start with "-" are passed to the default service.
Any other COMMAND is executed as given, e.g. "bash" or "python -V".

Environment: HOST, PORT, LOG_LEVEL, DATABASE_URL, REDIS_URL, AGENTS_URL,
READY_TIMEOUT, PROXY_TIMEOUT, RELOAD, APP_VERSION, APP_REVISION, APP_BUILD_DATE.
Run "docker-entrypoint.sh api-gateway --help" for details.
USAGE
}

log() {
  printf '%s: %s\n' "$PROG" "$*" >&2
}

# start_service NAME MODULE DEFAULT_PORT [ARGS...]
start_service() {
  local name=$1 module=$2 default_port=$3
  shift 3
  log "starting ${name} on port ${PORT:-${default_port}}"
  if command -v "$name" >/dev/null 2>&1; then
    exec "$name" "$@"
  fi
  exec python3 -m "$module" "$@"
}

if [[ $# -eq 0 ]]; then
  set -- api-gateway
fi

case "$1" in
  -h | --help | help)
    usage
    exit 0
    ;;
  -*)
    set -- api-gateway "$@"
    ;;
esac

case "$1" in
  api-gateway)
    shift
    start_service api-gateway backend.gateway 8000 "$@"
    ;;
  agents)
    shift
    start_service agents backend.agents 8001 "$@"
    ;;
  *)
    log "running command: $1"
    exec "$@"
    ;;
esac
