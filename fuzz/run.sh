#!/usr/bin/env bash
# Builds the fuzz targets with clang (libFuzzer + ASan + UBSan) and runs each on its corpus.
#   fuzz/run.sh              a short smoke run (what `make test` does)
#   FUZZ_SECONDS=600 fuzz/run.sh   a longer run
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/fuzz
mkdir -p "$out"
seconds=${FUZZ_SECONDS:-10}
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Isrc)

# target: sources
codec="src/codec/bounded_json.cpp"
declare -A targets=(
  [mqtt_decoder]="fuzz/mqtt_decoder_fuzz.cpp src/mqtt/codec.cpp src/mqtt/topic.cpp"
  [provisioning_messages]="fuzz/provisioning_messages_fuzz.cpp src/provisioning/messages.cpp src/provisioning/ownership_token.cpp src/crypto/openssl/hash.cpp src/base/status.cpp src/base/strings.cpp $codec -lcrypto"
  [provisioning_template]="fuzz/provisioning_template_fuzz.cpp src/provisioning/provisioning_template.cpp src/base/status.cpp src/base/strings.cpp $codec"
  [sdk_replies]="fuzz/sdk_replies_fuzz.cpp sdk/src/core/provisioning.cpp sdk/src/core/messages.cpp sdk/src/core/rotation.cpp -Isdk/include -Isdk/src"
  [policy]="fuzz/policy_fuzz.cpp src/policy/document.cpp src/policy/context.cpp src/policy/evaluator.cpp src/base/status.cpp src/base/strings.cpp $codec"
  [codec]="fuzz/codec_fuzz.cpp src/base/status.cpp $codec"
  [cluster_records]="fuzz/cluster_records_fuzz.cpp src/cluster/records.cpp src/cluster/subjects.cpp src/base/status.cpp $codec"
  [ocsp_request]="fuzz/ocsp_request_fuzz.cpp src/crypto/openssl/openssl_certificate_authority.cpp src/crypto/openssl/ossl.cpp src/crypto/openssl/csr_reader.cpp src/crypto/openssl/x509.cpp src/crypto/types.cpp src/base/files.cpp src/base/log.cpp src/base/clock.cpp src/base/status.cpp src/base/strings.cpp -lssl -lcrypto"
)
# The largest input each parser meets (so the fuzzer reaches the size and depth bounds): an
# MQTT payload (128 KiB), a policy (2,048 characters without whitespace), a template (10 KiB),
# an OCSP request (4,096 bytes).
declare -A max_len=(
  [mqtt_decoder]=8192 [provisioning_messages]=131072 [provisioning_template]=12288
  [sdk_replies]=16384 [policy]=8192 [codec]=131072 [cluster_records]=16384
  [ocsp_request]=8192
)

for t in "${!targets[@]}"; do
  # shellcheck disable=SC2086
  clang++ "${flags[@]}" ${targets[$t]} -o "$out/$t"
  work="$out/$t-corpus"
  mkdir -p "$work"
  echo "fuzz: $t for ${seconds}s"
  if ! "$out/$t" -max_total_time="$seconds" -max_len="${max_len[$t]}" -timeout=5 \
      -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$out/$t-" "$work" "fuzz/corpus/$t" >"$out/$t.log" 2>&1; then
    grep -E "ERROR|SUMMARY|#[0-9]+ 0x" "$out/$t.log" | head -20
    echo "fuzz: $t found a crash; the input is $out/$t-crash-* (add it to fuzz/corpus/$t once fixed)" >&2
    exit 1
  fi
  grep -E "^stat::number_of_executed_units" "$out/$t.log" || true
done
echo "fuzz: no crash"
