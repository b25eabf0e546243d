#!/usr/bin/env bash
# Fails when a C++ file is not clang-formatted; --fix formats them in place.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.cpp' '*.h')
if [[ "${1:-}" == "--fix" ]]; then
  clang-format -i "${files[@]}"
  clang-format -i "${files[@]}"  # a second pass: clang-format 14 is not always idempotent
  exit 0
fi
if ! clang-format --dry-run -Werror "${files[@]}" 2>/tmp/fleetkey-format.log; then
  head -40 /tmp/fleetkey-format.log
  echo "check-format: run 'make format'" >&2
  exit 1
fi
