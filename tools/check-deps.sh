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
  [crypto]="base"
  [storage]="base"
  [policy]="base"
  [net]="base crypto"
  [broker]="base mqtt net"
  [registry]="base storage policy crypto"
  [provisioning]="base registry crypto storage policy"
  [api]="base registry provisioning crypto storage policy net"
  [app]="base mqtt crypto storage policy net broker registry provisioning api"
  [cli]="base crypto net api"
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

# Backend headers stay in their backend folders (tests of a backend may use them too).
check_header() {  # pattern allowed-path-regex
  while IFS= read -r hit; do
    f=${hit%%:*}
    if ! [[ "$f" =~ $2 ]]; then
      echo "check-deps: $f includes $1 outside its backend folder"
      fail=1
    fi
  done < <(git grep -nE "#include <$1" -- 'src/*' 'sdk/*' || true)
}
check_header 'openssl/' '^src/(crypto/openssl|net/tls)/'
check_header 'sqlite3\.h' '^src/storage/sqlite/'
check_header 'libpq-fe\.h' '^src/storage/postgres/'
check_header 'boost/(asio|beast)' '^src/(net|app|broker)/'

exit $fail
