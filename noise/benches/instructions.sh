#!/usr/bin/env bash
# Instructions per operation under callgrind, ours and snow side by side,
# with ratios: deterministic, unlike wall time on a shared machine.
#   bash noise/benches/instructions.sh        (needs valgrind)
#   HFS=1 bash noise/benches/instructions.sh  (adds XXhfs with ML-KEM-768/1024)
set -euo pipefail
cd "$(dirname "$0")/../.."
features=""; [ "${HFS:-0}" = 1 ] && features="--features hfs"
# shellcheck disable=SC2086
cargo build -q --release -p securemesh-noise $features --example noise_cost
bin=target/release/examples/noise_cost
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
per() { local a b; a=$(count "$1" 0); b=$(count "$1" "$2"); echo $(( (b - a) / $2 )); }
dh=$(per x25519-dh 20); base=$(per x25519-base 20)
echo "floor: x25519 dh $dh, base-point $base instructions"
# X25519 operations per full handshake (both parties): each party derives its
# static public key and generates e (base-point), plus its DH tokens
# (XX: ee, es, se on each side; IK: es, ss, ee, se; NN: ee).
for p in XX:4:6 IK:4:8 NN:2:2 XXpsk3:4:6; do
  IFS=: read -r name nb nd <<<"$p"
  o=$(per "ours-$name" 5); s=$(per "snow-$name" 5); f=$(( nb * base + nd * dh ))
  awk -v n="$name" -v o="$o" -v s="$s" -v f="$f" -v nb="$nb" -v nd="$nd" 'BEGIN {
    printf "handshake %s: securemesh %d, snow %d instructions; ours/snow %.3f, ours/X25519 floor %.3f (%d base + %d dh)\n", n, o, s, o/s, o/f, nb, nd }'
done
if [ "${HFS:-0}" = 1 ]; then
  kg=$(per mlkem768-keygen 5); en=$(per mlkem768-encaps 5); de=$(per mlkem768-decaps 5)
  echo "floor: ML-KEM-768 keygen $kg, encaps $en, decaps $de instructions (decaps expands the stored seed)"
  xx=$(per ours-XX 5)
  for name in XXhfs XXhfs1024; do
    o=$(per "ours-$name" 5)
    awk -v n="$name" -v o="$o" -v x="$xx" 'BEGIN {
      printf "handshake %s: securemesh %d instructions; hybrid/classical XX %.3f\n", n, o, o/x }'
  done
fi
for size in 64 1024 16384 65519; do
  o=$(per "ours-transport-$size" 50); s=$(per "snow-transport-$size" 50); r=$(per "raw-transport-$size" 50)
  awk -v z="$size" -v o="$o" -v s="$s" -v r="$r" 'BEGIN {
    printf "transport %d B seal+open: securemesh %d, snow %d, raw AEAD %d instructions; ours/raw %.3f, ours/snow %.3f\n", z, o, s, r, o/r, o/s }'
done
