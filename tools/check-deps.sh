#!/usr/bin/env bash
# Keeps the dependency direction of ../shared/ARCHITECTURE.md true: each part may include only
# the parts below it, and backend headers (OpenSSL, SQLite, Asio/Beast) stay in their folders.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0

# allowed[part]: the parts it may include (besides itself).
declare -A allowed=(
  [base]=""
  [mqtt]="base"
  [codec]="base"
  [crypto]="base"
  [storage]="base"
  [policy]="base codec"
  [net]="base crypto"
  [broker]="base mqtt net"
  [cluster]="base broker codec crypto"
  [registry]="base storage policy crypto codec"
  [provisioning]="base registry crypto storage policy codec"
  [api]="base registry provisioning crypto storage policy net codec"
  [app]="base mqtt crypto storage policy net broker cluster registry provisioning api codec"
  [cli]="base crypto net api codec"
)

while IFS= read -r file; do
  part=$(echo "$file" | cut -d/ -f2)
  [[ -v "allowed[$part]" ]] || { echo "check-deps: unknown part src/$part ($file)"; fail=1; continue; }
  while IFS= read -r inc; do
    dep=${inc%%/*}
    [[ "$dep" == "$part" ]] && continue
    if [[ " ${allowed[$part]} " != *" $dep "* ]]; then
      echo "check-deps: $file includes \"$inc\": src/$part may not depend on src/$dep"
      fail=1
    fi
  done < <(grep -oE '^#include "[a-z_]+/[^"]+"' "$file" | sed -E 's/#include "(.*)"/\1/')
done < <(git ls-files 'src/*.cpp' 'src/*.h')

# The device SDK (sdk/): public headers include only the standard library and each other;
# the core (no I/O) only its own headers; the Linux platform may use base, mqtt and crypto;
# example programs only the public headers (what a device program sees); tools also mqtt.
declare -A sdk_allowed=(
  [sdk/include]="fleetkey"
  [sdk/src/core]="fleetkey core"
  [sdk/src/linux]="fleetkey base mqtt crypto"
  [sdk/examples]="fleetkey"
  [sdk/tools]="fleetkey mqtt"
  [examples]="fleetkey"
)
while IFS= read -r file; do
  area=""
  for a in "${!sdk_allowed[@]}"; do [[ "$file" == "$a"/* ]] && area=$a; done
  [[ -n "$area" ]] || { echo "check-deps: $file is in no known SDK area"; fail=1; continue; }
  while IFS= read -r inc; do
    dep=${inc%%/*}
    if [[ " ${sdk_allowed[$area]} " != *" $dep "* ]]; then
      echo "check-deps: $file includes $inc: $area may not depend on $dep"
      fail=1
    fi
  done < <(grep -oE '^#include ["<](fleetkey|core|base|mqtt|crypto|net|broker|registry|storage|policy|provisioning|api|app|cli)/[^">]+[">]' "$file" | sed -E 's/#include ["<](.*)[">]/\1/')
done < <(git ls-files 'sdk/*.cpp' 'sdk/*.h' 'examples/*.cpp' 'examples/*.h')
# Public headers: the standard library, each other, and nothing else.
while IFS= read -r hit; do
  echo "check-deps: public header ${hit%%:*} includes ${hit#*:} (only <std> and fleetkey/)"
  fail=1
done < <(git grep -hnE '^#include [<"]' -- 'sdk/include/*' | grep -vE '#include ("fleetkey/|<[a-z_]+>)' | sed 's/^[0-9]*://' | sed "s|^|sdk/include: |" || true)

# Backend headers stay in their backend folders (tests of a backend may use them too).
check_header() {  # pattern allowed-path-regex
  while IFS= read -r hit; do
    f=${hit%%:*}
    if ! [[ "$f" =~ $2 ]]; then
      echo "check-deps: $f includes $1 outside its backend folder"
      fail=1
    fi
  done < <(git grep -nE "#include <$1" -- 'src/*' 'sdk/*' 'examples/*' || true)
}
check_header 'openssl/' '^(src/(crypto/openssl|net/tls)|sdk/src/linux)/'
check_header 'gnutls/' '^src/net/tls/gnutls/'
check_header 'sqlite3\.h' '^src/storage/sqlite/'
check_header 'libpq-fe\.h' '^src/storage/postgres/'
check_header 'boost/(asio|beast)' '^(src/(net|app|broker)|sdk/src/linux|sdk/examples|sdk/tools|examples)/'

exit $fail
