#!/usr/bin/env bash
# The device SDK's peak heap during one fleet provisioning, without the TLS library, measured
# by valgrind massif on fleetkey-sdk-heap-probe (state machine, payloads, MQTT framing, the
# credential file store; replies from ../shared/vectors). Prints massif's peak, the heap that
# existed before main() (libstdc++'s emergency exception pool, which an MCU build without
# exceptions does not have), and the difference: what provisioning itself needs.
#
#   bench/sdk_heap.sh [build/bin]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/bin}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
valgrind --tool=massif --stacks=no --massif-out-file="$out/massif.out" \
  "$bin/fleetkey-sdk-heap-probe" ../shared/vectors "$out/state" >"$out/probe.txt" 2>/dev/null
cat "$out/probe.txt"
python3 - "$out/massif.out" <<'PY'
import re, sys
snaps, cur = [], {}
for line in open(sys.argv[1]):
    m = re.match(r"(mem_heap_B|mem_heap_extra_B)=(\d+)", line)
    if m:
        cur[m.group(1)] = int(m.group(2))
        if len(cur) == 2:
            snaps.append(cur["mem_heap_B"] + cur["mem_heap_extra_B"])
            cur = {}
peak = max(snaps)
# The first non-empty snapshot is libstdc++'s pool, allocated by the dynamic loader.
base = next(s for s in snaps if s > 0)
print("massif peak heap: %d B; before main: %d B; provisioning: %d B (%.1f KB; target 16 KB)"
      % (peak, base, peak - base, (peak - base) / 1024))
PY
