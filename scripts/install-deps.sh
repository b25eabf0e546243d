#!/usr/bin/env bash
# Installs the Debian 12 packages fleetkey needs to build, test and run.
# Idempotent: apt-get runs only when something is missing. Needs root (or sudo).
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config clang clang-format libclang-rt-14-dev
  # libraries (one per job, see ../shared/ARCHITECTURE.md)
  libboost1.81-dev libssl-dev libjemalloc-dev libsqlite3-dev libpq-dev nlohmann-json3-dev
  libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev libnats-dev libgnutls28-dev
  # real tools used by tests and benchmarks
  openssl sqlite3 curl mosquitto mosquitto-clients python3-paho-mqtt python3-cbor2 python3-cryptography
  python3-prometheus-client
  # the web console's browser test (Debian's Chromium driven by Selenium through ChromeDriver)
  chromium chromium-driver python3-selenium fonts-dejavu-core
  # servers the tests start on loopback themselves (scripts/postgres.sh, scripts/cluster.sh)
  postgresql-15 haproxy nats-server
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The mosquitto and postgresql packages start system services; tests run their own.
if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
  $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
  $SUDO systemctl disable --now haproxy >/dev/null 2>&1 || true
  $SUDO systemctl disable --now nats-server >/dev/null 2>&1 || true
fi
