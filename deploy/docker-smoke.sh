#!/usr/bin/env bash
# Proves the Dockerfile for real on a machine that reaches no container registry: Debian's
# docker.io daemon, a base image made by debootstrap from Debian's packages, then build the
# image, run it as its users would (keys from a secret file, a cache volume), wait for the
# HEALTHCHECK, and ask chat through the published API.
#
#   sudo deploy/docker-smoke.sh            # everything, from apt-get to clean-up
#   KEEP=1 deploy/docker-smoke.sh          # leave the container running afterwards
#   BASE=python:3.11-slim-bookworm deploy/docker-smoke.sh    # a registry's base image
#   SKIP_BUILD=1 IMAGE=pocketserve:ci deploy/docker-smoke.sh # run and check a built image
#
# Containers use the host's network (--network host) for the build and the run, so that no
# bridge is needed and every request goes to 127.0.0.1. Extra CA certificates of the host
# (/usr/local/share/ca-certificates, e.g. an egress proxy's) are trusted in the base image so
# that pip inside the build can reach PyPI through the same proxy as the host.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
BASE="${BASE:-local/debian-python:$SUITE}"
IMAGE="${IMAGE:-pocketserve:smoke}"
NAME="${NAME:-pocketserve-smoke}"
PORT="${PORT:-18000}"
WORK="${WORK:-/tmp/pocketserve-docker-smoke}"
KEY="sk-smoke-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
STARTED_DOCKERD=""

log() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

local_base() { [[ -z "${SKIP_BUILD:-}" && "$BASE" == local/* ]]; }

need_packages() {
  local missing=()
  if ! command -v docker >/dev/null \
     || ! { docker info >/dev/null 2>&1 || command -v dockerd >/dev/null; }; then
    missing+=(docker.io)  # no client, or a client with no daemon running nor installed
  fi
  if local_base && ! command -v debootstrap >/dev/null; then missing+=(debootstrap); fi
  command -v curl >/dev/null || missing+=(curl)
  [[ ${#missing[@]} -eq 0 ]] && return
  log "installing ${missing[*]} from Debian"
  local sudo=""; [[ "$(id -u)" == 0 ]] || sudo=sudo
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

start_docker() {
  if docker info >/dev/null 2>&1; then return; fi
  log "starting dockerd (no bridge: containers use the host's network)"
  mkdir -p "$WORK"
  dockerd --bridge=none --iptables=false >"$WORK/dockerd.log" 2>&1 &
  STARTED_DOCKERD=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return
    kill -0 "$STARTED_DOCKERD" 2>/dev/null || { tail -20 "$WORK/dockerd.log"; fail "dockerd exited"; }
    sleep 1
  done
  tail -20 "$WORK/dockerd.log"; fail "dockerd did not answer within 60 s"
}

make_base() {
  if docker image inspect "$BASE" >/dev/null 2>&1; then
    log "base image $BASE already present"; return
  fi
  if ! local_base; then
    log "docker pull $BASE"; docker pull "$BASE"; return
  fi
  local rootfs="$WORK/rootfs"
  log "debootstrap $SUITE (minbase + python3, venv, certificates) into $rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR"
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  log "importing it as $BASE"
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$BASE"
  rm -rf "$rootfs"
}

build_image() {
  log "docker build --build-arg BASE=$BASE -t $IMAGE"
  docker build --network host --build-arg "BASE=$BASE" -t "$IMAGE" "$ROOT"
}

cleanup() {
  if [[ -z "${KEEP:-}" ]]; then
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    docker volume rm "$NAME-cache" "$NAME-data" >/dev/null 2>&1 || true
    if [[ -n "$STARTED_DOCKERD" ]]; then kill "$STARTED_DOCKERD" 2>/dev/null || true; fi
  fi
}

run_container() {
  mkdir -p "$WORK"
  printf '# keys for the smoke test\n%s\n' "$KEY" >"$WORK/api_keys"
  chmod 0644 "$WORK/api_keys"  # read by the image's non-root user
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  log "docker run $IMAGE on 127.0.0.1:$PORT (host network, keys from a secret file)"
  docker run -d --name "$NAME" --network host \
    -e POCKETSERVE_PORT="$PORT" \
    -v "$WORK/api_keys:/run/secrets/api_keys:ro" \
    -v "$NAME-cache:/var/cache/pocketserve" -v "$NAME-data:/var/lib/pocketserve" \
    "$IMAGE" >/dev/null
}

wait_healthy() {
  log "waiting for the HEALTHCHECK to report healthy"
  local state="" health=""
  for _ in $(seq 120); do
    state="$(docker inspect -f '{{.State.Health.Status}}' "$NAME" 2>/dev/null || echo gone)"
    [[ "$state" == healthy ]] && return
    [[ "$state" == unhealthy ]] && break
    [[ "$(docker inspect -f '{{.State.Running}}' "$NAME")" == true ]] || break
    # A model that failed to load stays failed: no need to wait for the health check.
    health="$(curl -s "http://127.0.0.1:$PORT/health" || true)"
    [[ "$health" == *'"failed"'* ]] && break
    sleep 5
  done
  docker logs --tail 40 "$NAME" 2>&1 | grep -v 'GET /health' || true
  fail "container is $state, not healthy: ${health:-no answer from /health}"
}

check_api() {
  local url="http://127.0.0.1:$PORT" body
  log "checks against $url"
  [[ "$(docker exec "$NAME" id -u)" != 0 ]] || fail "the server runs as root"
  for path in /health /healthz /ping /metrics; do
    curl -fsS -o /dev/null "$url$path" || fail "GET $path"
    echo "GET $path: 200"
  done
  code="$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/models")"
  [[ "$code" == 401 ]] || fail "GET /v1/models without a key answered $code, not 401"
  echo "GET /v1/models without a key: 401"
  body="$(curl -fsS "$url/v1/chat/completions" -H "Authorization: Bearer $KEY" \
    -H 'content-type: application/json' \
    -d '{"model": "smollm2", "max_tokens": 32, "temperature": 0,
         "messages": [{"role": "system", "content": "You are a helpful assistant."},
                      {"role": "user", "content": "What is the capital of France?"}]}')" \
    || fail "chat completion"
  echo "chat: $body"
  grep -q '"content":"[^"]' <<<"$body" || grep -q '"content": "[^"]' <<<"$body" \
    || fail "chat answered no text"
  grep -q 'pocketserve_requests_total{.*route="/v1/chat/completions"' \
    <<<"$(curl -fsS "$url/metrics")" || fail "/metrics does not count the chat request"
  echo "metrics count the chat request"
}

main() {
  need_packages
  start_docker
  trap cleanup EXIT
  if [[ -z "${SKIP_BUILD:-}" ]]; then
    make_base
    build_image
  fi
  run_container
  wait_healthy
  check_api
  log "docker smoke test passed ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes image)"
}

main "$@"
