#!/usr/bin/env bash
# Makes sure a ZooKeeper is there to start, installing Debian's package (and the JRE it pulls in)
# only when none is. Idempotent and quiet when everything is there already; needs root (or sudo)
# only when it has to install.
#
# An existing ZooKeeper is used when told: ZOOKEEPER_HOME (an unpacked release: lib/*.jar), or a
# zkServer.sh on PATH (scripts/zookeeper.ts finds its jars the same way); then nothing is installed
# for ZooKeeper, on any system.
#
#   ensure-zookeeper.sh          ZooKeeper, plus what the test suite needs: openssl (the TLS tests'
#                                certificates), chromium (the status page's browser test) and
#                                docker-compose (the compose file's check)
#   ensure-zookeeper.sh --only   ZooKeeper alone (npm run demo)
set -euo pipefail
only=false
[ "${1:-}" = "--only" ] && only=true

has_zookeeper() {
  if [ -n "${ZOOKEEPER_HOME:-}" ]; then
    if ls "$ZOOKEEPER_HOME"/lib/*.jar >/dev/null 2>&1 || ls "$ZOOKEEPER_HOME"/*.jar >/dev/null 2>&1; then return 0; fi
    echo "ensure-zookeeper: ZOOKEEPER_HOME=$ZOOKEEPER_HOME holds no ZooKeeper jars (lib/*.jar)" >&2
    exit 1
  fi
  command -v zkServer.sh >/dev/null 2>&1 && return 0
  [ -f /usr/share/java/zookeeper.jar ]
}

missing=()
if ! has_zookeeper || ! command -v java >/dev/null 2>&1; then missing+=(zookeeper); fi
if [ "$only" = false ]; then
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-zookeeper: missing ${missing[*]}, and this is not a Debian-like system: install them, or point ZOOKEEPER_HOME at an unpacked ZooKeeper release (or put its zkServer.sh on PATH)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "ensure-zookeeper: missing ${missing[*]} and this is not root; run: apt-get install -y ${missing[*]} (or set ZOOKEEPER_HOME to your ZooKeeper)" >&2
    exit 1
  fi
fi
echo "ensure-zookeeper: installing ${missing[*]} with apt..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
has_zookeeper
