#!/usr/bin/env bash
# System packages the project and its tests need (Debian): Chromium for the browser
# tests, a JDK 17 (java + javac) and Maven for the Java test servers, python3 venv
# support, setpriv (util-linux) to run Elasticsearch unprivileged when root.
# Idempotent and quick: apt is only used when something is missing (FORCE_APT=1 forces it).
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v javac >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v curl >/dev/null 2>&1 || missing+=(curl)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# fonts so that screenshots show text the way a person sees it
[ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)

if [ ${#missing[@]} -eq 0 ] && [ -z "${FORCE_APT:-}" ]; then
  echo "[install-system] all system packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "[install-system] missing: ${missing[*]} -- run as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "[install-system] apt-get install ${missing[*]:-chromium}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]:-chromium}" >/dev/null
