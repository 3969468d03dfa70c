#!/usr/bin/env bash
# Instructions per operation under callgrind, ours and vodozemac (Olm) side
# by side, with ratios: deterministic, unlike wall time on a shared machine.
#   bash ratchet/benches/instructions.sh        (needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --release -p securemesh-ratchet --example cost
bin=target/release/examples/cost
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
per() { local a b; a=$(count "$1" 0); b=$(count "$1" "$2"); echo $(( (b - a) / $2 )); }
dh=$(per x25519-dh 20); base=$(per x25519-base 20); ver=$(per ed25519-verify 20)
echo "floor: x25519 dh $dh, base-point $base, ed25519 verify $ver instructions"
o=$(per ours-setup 8); v=$(per olm-setup 8); b=$(per ours-bundle-verify 8)
# Ours: Alice X3DH (ek: 1 base, 4 DH) and first sending step (1 base, 1 DH);
# Bob X3DH (4 DH), receiving step (1 DH) and the identity verify.
f=$(( 2 * base + 10 * dh + ver ))
awk -v o="$o" -v v="$v" -v f="$f" -v b="$b" 'BEGIN {
  printf "setup (both sides, first message): securemesh %d, vodozemac %d instructions; ours/vodozemac %.3f, ours/floor %.3f (2 base + 10 dh + 1 verify); bundle verify %d\n", o, v, o/v, o/f, b }'
for kind in burst pingpong; do
  for size in 64 1024; do
    o=$(per "ours-$kind-$size" 40); v=$(per "olm-$kind-$size" 40)
    if [ "$kind" = pingpong ]; then
      f=$(( base + 2 * dh ))
      extra=$(awk -v o="$o" -v f="$f" 'BEGIN { printf ", ours/floor %.3f (1 keygen + 2 dh)", o/f }')
    else
      extra=$(awk -v o="$o" -v d="$dh" 'BEGIN { printf ", ours/dh %.3f", o/d }')
    fi
    awk -v k="$kind" -v z="$size" -v o="$o" -v v="$v" -v e="$extra" 'BEGIN {
      printf "%s %d B encrypt+decrypt: securemesh %d, vodozemac %d instructions; ours/vodozemac %.3f%s\n", k, z, o, v, o/v, e }'
  done
done
