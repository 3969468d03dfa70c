#!/usr/bin/env bash
# Build the securemesh Cortex-M4F firmware binaries, run them under QEMU
# and print their figures. CI calls it from the repository root:
#     bash test-vectors/firmware/run.sh
# On a fresh Debian machine it installs what is missing: the
# thumbv7em-none-eabihf target, qemu-system-arm and a size tool.
#
# Three firmwares, each its own cargo workspace: securemesh-firmware (here:
# KATs, core operations, Noise, ratchet, MLS; prints `firmware: N passed,
# M failed`), securemesh-firmware-mesh (mesh/: the mesh agent; prints
# `firmware-mesh: N passed, M failed`) and securemesh-firmware-pq (pq/:
# ML-KEM-768, X-Wing and Noise XXhfs; prints `firmware-pq: N passed, M
# failed`). The last line counted is their sum, `firmware: N passed, 0 failed`.
#
# Fails if a binary does not link (any crate using `alloc`: there is no
# global allocator), if a run fails or hangs, or if an output lacks its
# counted line or counts a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# One target directory for all firmwares if one is set: made absolute here
# (a relative one names a directory under this one, as cargo reads it here).
if [ -n "${CARGO_TARGET_DIR:-}" ]; then export CARGO_TARGET_DIR="$(realpath -m "$CARGO_TARGET_DIR")"; fi
export DEBIAN_FRONTEND=noninteractive
# The link flags live in .cargo/config.toml; an exported RUSTFLAGS would
# replace them (and the link would fail without cortex-m-rt's link.x).
unset RUSTFLAGS

TARGET=thumbv7em-none-eabihf
# directory, binary, and the prefix of its counted line and size lines
FIRMWARES=(". securemesh-firmware firmware" "mesh securemesh-firmware-mesh firmware-mesh" "pq securemesh-firmware-pq firmware-pq")
RUN_TIMEOUT=120 # seconds per binary; each run takes a few seconds

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=no
apt_install() {
  if [ "$apt_updated" = no ]; then as_root apt-get update -qq; apt_updated=yes; fi
  as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

rustup target add "$TARGET" >/dev/null 2>&1 || rustup target add "$TARGET"
if ! command -v qemu-system-arm >/dev/null; then
  echo "installing qemu-system-arm"
  apt_install qemu-system-arm
fi

# Size tools: rustup's llvm-tools, else Debian's binutils-arm-none-eabi.
size_tool="" nm_tool=""
if rustup component add llvm-tools >/dev/null 2>&1; then
  bin="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
  if [ -x "$bin/llvm-size" ] && [ -x "$bin/llvm-nm" ]; then
    size_tool="$bin/llvm-size" nm_tool="$bin/llvm-nm"
  fi
fi
if [ -z "$size_tool" ]; then
  command -v arm-none-eabi-size >/dev/null || apt_install binutils-arm-none-eabi
  size_tool=arm-none-eabi-size nm_tool=arm-none-eabi-nm
fi

for entry in "${FIRMWARES[@]}"; do
  read -r dir _ _ <<<"$entry"
  (cd "$dir" && cargo build --release --locked)
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Section sizes (SysV format: name size addr). Flash holds the vector table,
# code, constants and the initial values of .data; RAM holds .data and .bss.
sizes() {
  local elf="$1" prefix="$2"
  sections=$("$size_tool" -A "$elf")
  section() { awk -v s="$1" '$1 == s { print $2; f = 1 } END { if (!f) print 0 }' <<<"$sections"; }
  vectors=$(section .vector_table) text=$(section .text) rodata=$(section .rodata)
  data=$(section .data) bss=$(section .bss) uninit=$(section .uninit)
  symbol() { "$nm_tool" "$elf" | awk -v s="$1" '$3 == s { print $1 }'; }
  stack=$(( 0x$(symbol _stack_start) - 0x$(symbol _stack_end) ))
  flash=$(( vectors + text + rodata + data ))
  ram=$(( data + bss + uninit ))
  echo "$prefix flash: $flash B"
  echo "$prefix ram: $ram B"
  echo "$prefix stack reserved: $stack B"
  echo "$prefix ram incl. stack: $(( ram + stack )) B"
  echo "$prefix sections: .vector_table $vectors, .text $text, .rodata $rodata, .data $data, .bss $bss, .uninit $uninit (B)"
}

passed=0 failed=0 counts=""
for entry in "${FIRMWARES[@]}"; do
  read -r dir bin prefix <<<"$entry"
  status=0
  (cd "$dir" && timeout "$RUN_TIMEOUT" cargo run --release --locked -q) | tee "$log" || status=$?
  if [ "$status" -ne 0 ]; then
    [ "$status" -eq 124 ] && echo "$bin run timed out after ${RUN_TIMEOUT}s (stack overflow locks the core up)"
    echo "$bin run FAILED (exit status $status)"
    exit 1
  fi
  line=$(grep -E "^$prefix: [0-9]+ passed, [0-9]+ failed\$" "$log" | tail -n 1)
  if [ -z "$line" ]; then
    echo "$bin output lacks '$prefix: N passed, M failed'"
    exit 1
  fi
  read -r p f <<<"$(sed -E 's/^[^:]*: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/' <<<"$line")"
  passed=$(( passed + p )) failed=$(( failed + f ))
  counts="$counts${counts:+ + }$bin $p"
  sizes "${CARGO_TARGET_DIR:-$dir/target}/$TARGET/release/$bin" "$prefix"
done

echo "firmware families passed: $counts"
echo "firmware: $passed passed, $failed failed"
if [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
  echo "firmware: some family FAILED"
  exit 1
fi
