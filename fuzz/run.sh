#!/usr/bin/env bash
# Run every cargo-fuzz target of securemesh for a fixed time each.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET]      (default 15; from any directory)
#
# Needs rustup with a `nightly` toolchain (never downloaded here). Installs
# cargo-fuzz with `cargo install cargo-fuzz --locked` if it is missing.
# Every target `cargo fuzz list` reports is run, so new [[bin]] targets in
# fuzz/Cargo.toml are picked up without touching this script. Each target
# starts from its committed seeds (fuzz/seeds/<target>/, if present) plus the
# corpus kept from earlier runs (fuzz/corpus/<target>/, git-ignored). Crash
# inputs land in fuzz/artifacts/<target>/ (git-ignored); logs in
# fuzz/target/fuzz-logs/. Exits non-zero if any target fails.
#
# Environment:
#   FUZZ_TOOLCHAIN  toolchain for cargo-fuzz builds (default: nightly)
#   FUZZ_SANITIZER  address (default), none, ... ; if the address-sanitizer
#                   build fails the script falls back to `none` and says so
#   FUZZ_RSS_MB     libFuzzer -rss_limit_mb (default: 2048)
set -euo pipefail

secs="${1:-15}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
    echo "usage: bash fuzz/run.sh [SECONDS_PER_TARGET]" >&2
    exit 2
fi

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$fuzz_dir/.." && pwd)"
cd "$root"

toolchain="${FUZZ_TOOLCHAIN:-nightly}"
sanitizer="${FUZZ_SANITIZER:-address}"
rss_mb="${FUZZ_RSS_MB:-2048}"
log_dir="$fuzz_dir/target/fuzz-logs"
# Keep the build inside fuzz/target even if the caller set a global one.
unset CARGO_TARGET_DIR
mkdir -p "$log_dir"

# (No `grep -q` on a pipe: with pipefail an early exit could fail rustup.)
if ! rustup toolchain list | grep "^${toolchain}" >/dev/null; then
    echo "fuzz: rustup toolchain '${toolchain}' is not installed (cargo-fuzz needs nightly)" >&2
    exit 1
fi

if ! cargo "+${toolchain}" fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

# libfuzzer-sys compiles libFuzzer (C++).
if ! command -v c++ >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "fuzz: no C++ compiler; installing g++"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
    else
        echo "fuzz: a C++ compiler (c++) is needed to build libFuzzer" >&2
        exit 1
    fi
fi

echo "fuzz: $(cargo "+${toolchain}" fuzz --version | head -n1), $(rustc "+${toolchain}" --version)"

build() {
    cargo "+${toolchain}" fuzz build --sanitizer "$1" >"$log_dir/build.log" 2>&1
}

echo "fuzz: building all targets (sanitizer=${sanitizer})"
if ! build "$sanitizer"; then
    if [ "$sanitizer" != none ]; then
        tail -n 30 "$log_dir/build.log" >&2
        echo "fuzz: NOTE: the ${sanitizer}-sanitizer build failed; falling back to --sanitizer none" >&2
        sanitizer=none
        if ! build none; then
            tail -n 60 "$log_dir/build.log" >&2
            echo "fuzz: build failed" >&2
            exit 1
        fi
    else
        tail -n 60 "$log_dir/build.log" >&2
        echo "fuzz: build failed" >&2
        exit 1
    fi
fi

mapfile -t targets < <(cargo "+${toolchain}" fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "fuzz: cargo fuzz list reported no targets" >&2
    exit 1
fi

passed=0
failed=()
summaries=()
for t in "${targets[@]}"; do
    corpus="$fuzz_dir/corpus/$t"
    artifacts="$fuzz_dir/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    dirs=("$corpus")
    if [ -d "$fuzz_dir/seeds/$t" ]; then
        dirs+=("$fuzz_dir/seeds/$t")
    fi
    log="$log_dir/$t.log"
    echo "fuzz: running $t for ${secs}s (corpus: ${dirs[*]#"$root/"})"
    start=$(date +%s.%N)
    rc=0
    cargo "+${toolchain}" fuzz run --sanitizer "$sanitizer" "$t" "${dirs[@]}" -- \
        -max_total_time="$secs" -rss_limit_mb="$rss_mb" -timeout=30 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1 || rc=$?
    end=$(date +%s.%N)
    wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n1 || true)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")

    if [ "$rc" -eq 0 ]; then
        status=ok
        passed=$((passed + 1))
    else
        status="FAILED(rc=$rc)"
        failed+=("$t")
        echo "fuzz: $t FAILED (full log: ${log#"$root/"}):" >&2
        grep -m 3 -A 4 -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)' "$log" >&2 || true
        echo "fuzz: ... last lines of the log:" >&2
        tail -n 25 "$log" >&2
        for f in "$artifacts"/*; do
            [ -f "$f" ] || continue
            echo "fuzz: artifact $f ($(wc -c <"$f") bytes):" >&2
            od -An -v -tx1 "$f" | tr -d ' \n' | head -c 8192 >&2
            echo >&2
            echo "fuzz: reproduce: cargo +${toolchain} fuzz run --sanitizer ${sanitizer} $t $f" >&2
        done
    fi
    line=$(printf 'fuzz: %-20s %-6s runs=%s exec/s=%s cov=%s ft=%s corpus=%s time=%ss' \
        "$t" "$status" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$wall")
    echo "$line"
    summaries+=("$line")
done

echo
echo "fuzz: summary (sanitizer=${sanitizer}, ${secs}s per target)"
printf '%s\n' "${summaries[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz: ${#failed[@]} of ${#targets[@]} targets FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz: ${passed} targets passed"
