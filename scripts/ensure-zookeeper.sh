#!/usr/bin/env bash
# Installs Debian's ZooKeeper (and the JRE it pulls in) when it is missing. Idempotent and quiet
# when everything is there already; needs root (or sudo) only when it has to install.
set -euo pipefail
# openssl: the TLS tests make their certificates with it; chromium: the status page's browser test;
# docker-compose: the compose file's check (`config` needs no Docker engine).
if [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 && [ -x /usr/bin/chromium ] && command -v docker-compose >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "ensure-zookeeper: ZooKeeper is not installed and this is not root; run: apt-get install -y zookeeper" >&2
    exit 1
  fi
fi
echo "ensure-zookeeper: installing Debian's zookeeper package (and a JRE), openssl, chromium and docker-compose..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq zookeeper openssl chromium docker-compose >/dev/null
test -f /usr/share/java/zookeeper.jar
