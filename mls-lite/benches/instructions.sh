#!/usr/bin/env bash
# Instructions per MLS operation under callgrind at N = 2, 8, 32, 128
# members, and the scaling t(128)/t(8): deterministic, unlike wall time.
#   bash mls-lite/benches/instructions.sh        (needs valgrind)
# The peers (OpenMLS, mls-rs) are not in this run yet.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --release -p securemesh-mls-lite --example group_cost
bin=target/release/examples/group_cost
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" "$3" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
per() { local a b; a=$(count "$1" "$2" 0); b=$(count "$1" "$2" "$3"); echo $(( (b - a) / $3 )); }
for op in update process-update add process-add message; do
  line="$op:"
  for n in 2 8 32 128; do
    v=$(per "$op" "$n" 4)
    if [ "${op#process-}" != "$op" ]; then v=$(( v - $(per restore "$n" 4) )); fi
    eval "t_$n=$v"
    line="$line N=$n $v"
  done
  echo "$line instructions; t(128)/t(8) $(awk -v a="$t_128" -v b="$t_8" 'BEGIN { printf "%.2f", a/b }')"
done
