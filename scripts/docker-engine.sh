#!/usr/bin/env bash
# Make a Docker engine usable on this machine: install Debian's docker.io (plus debootstrap for
# the local base image and docker-compose to validate docker/compose.clearml.yml) when missing, start dockerd without a bridge or iptables (this sandbox has
# neither), and wait until it answers. Idempotent: an engine that already answers is left alone.
# usage: scripts/docker-engine.sh        (prints the docker client to use: /usr/bin/docker)
set -euo pipefail
DOCKER=/usr/bin/docker   # Debian's client; the first `docker` on PATH may lack BuildKit support
if ! [[ -x /usr/sbin/dockerd && -x $DOCKER && -x /usr/sbin/debootstrap && -x /usr/bin/docker-compose ]]; then
  echo "docker-engine: installing docker.io debootstrap docker-compose" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap docker-compose >/dev/null
fi
if ! $DOCKER info >/dev/null 2>&1; then
  echo "docker-engine: starting dockerd (--bridge=none --iptables=false)" >&2
  nohup /usr/sbin/dockerd --bridge=none --iptables=false >/tmp/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    $DOCKER info >/dev/null 2>&1 && break
    sleep 1
  done
  $DOCKER info >/dev/null 2>&1 || { echo "docker-engine: dockerd did not start (see /tmp/dockerd.log)" >&2; exit 1; }
fi
echo "$DOCKER"
