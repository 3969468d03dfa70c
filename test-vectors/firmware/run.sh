#!/usr/bin/env bash
# Build the securemesh Cortex-M4F firmware, run it under QEMU and print its
# figures. CI calls it from the repository root:
#     bash test-vectors/firmware/run.sh
# On a fresh Debian machine it installs what is missing: the
# thumbv7em-none-eabihf target, qemu-system-arm and a size tool.
#
# Fails if the firmware does not link (any crate using `alloc`: there is no
# global allocator), if the run fails or hangs, or if its output lacks
# `firmware: N passed, 0 failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export DEBIAN_FRONTEND=noninteractive
# The link flags live in .cargo/config.toml; an exported RUSTFLAGS would
# replace them (and the link would fail without cortex-m-rt's link.x).
unset RUSTFLAGS

TARGET=thumbv7em-none-eabihf
ELF="${CARGO_TARGET_DIR:-target}/$TARGET/release/securemesh-firmware"
RUN_TIMEOUT=120 # seconds; the run itself takes well under one

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

cargo build --release --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
timeout "$RUN_TIMEOUT" cargo run --release --locked -q | tee "$log" || status=$?
if [ "$status" -ne 0 ]; then
  [ "$status" -eq 124 ] && echo "firmware run timed out after ${RUN_TIMEOUT}s (stack overflow locks the core up)"
  echo "firmware run FAILED (exit status $status)"
  exit 1
fi
if ! grep -Eq '^firmware: [1-9][0-9]* passed, 0 failed$' "$log"; then
  echo "firmware output lacks 'firmware: N passed, 0 failed'"
  exit 1
fi

# Section sizes (SysV format: name size addr). Flash holds the vector table,
# code, constants and the initial values of .data; RAM holds .data and .bss.
sections=$("$size_tool" -A "$ELF")
section() { awk -v s="$1" '$1 == s { print $2; f = 1 } END { if (!f) print 0 }' <<<"$sections"; }
vectors=$(section .vector_table) text=$(section .text) rodata=$(section .rodata)
data=$(section .data) bss=$(section .bss) uninit=$(section .uninit)
symbol() { "$nm_tool" "$ELF" | awk -v s="$1" '$3 == s { print $1 }'; }
stack=$(( 0x$(symbol _stack_start) - 0x$(symbol _stack_end) ))
flash=$(( vectors + text + rodata + data ))
ram=$(( data + bss + uninit ))
echo "firmware flash: $flash B"
echo "firmware ram: $ram B"
echo "firmware stack reserved: $stack B"
echo "firmware ram incl. stack: $(( ram + stack )) B"
echo "firmware sections: .vector_table $vectors, .text $text, .rodata $rodata, .data $data, .bss $bss, .uninit $uninit (B)"
