#!/usr/bin/env bash
# Installs fleetkey's programs and the fleetkeyd system service (make install).
#   PREFIX (default /usr/local)  where bin/ goes
#   DESTDIR (default empty)      a staging root (packaging, tests); nothing outside it is touched
# With no DESTDIR and as root it also makes the `fleetkey` system user. It never enables or
# starts the service: the README says how.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
bin="$DESTDIR$PREFIX/bin"
for p in fleetkeyd fleetkey locker-controller fleetkey-fleet-sim; do
  [[ -x build/bin/$p ]] || { echo "install: build/bin/$p is missing (run make build)" >&2; exit 1; }
done
install -d -m 0755 "$bin" "$DESTDIR/etc/systemd/system" "$DESTDIR/etc/fleetkey"
install -m 0755 build/bin/fleetkeyd build/bin/fleetkey build/bin/locker-controller \
  build/bin/fleetkey-fleet-sim "$bin/"
sed "s|@BINDIR@|$PREFIX/bin|g" packaging/systemd/fleetkeyd.service \
  >"$DESTDIR/etc/systemd/system/fleetkeyd.service"
chmod 0644 "$DESTDIR/etc/systemd/system/fleetkeyd.service"
# An edited configuration is never overwritten.
if [[ ! -e "$DESTDIR/etc/fleetkey/fleetkeyd.toml" ]]; then
  install -m 0644 packaging/fleetkeyd.toml "$DESTDIR/etc/fleetkey/fleetkeyd.toml"
fi
if [[ -z "$DESTDIR" && $(id -u) -eq 0 ]]; then
  if ! id fleetkey >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/fleetkey --no-create-home --shell /usr/sbin/nologin \
      fleetkey
  fi
  if [[ -d /run/systemd/system ]]; then systemctl daemon-reload; fi
fi
echo "install: programs in $bin, service $DESTDIR/etc/systemd/system/fleetkeyd.service," \
  "settings $DESTDIR/etc/fleetkey/fleetkeyd.toml"
echo "install: start it with: systemctl enable --now fleetkeyd   (data in /var/lib/fleetkey)"
