#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ and runs each for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 20 s, every target)
#
# Works on the stable toolchain: libFuzzer (from the libfuzzer-sys crate) needs only
# coverage instrumentation, which stable rustc gives through -Cpasses=sancov-module and
# LLVM's sanitizer-coverage options; no -Z flag, no nightly, no cargo-fuzz. Without
# AddressSanitizer, memory errors in unsafe code would go unseen, but this code base
# forbids unsafe code; panics, overflows (overflow-checks are on) and failed assertions
# are what the targets find, and inputs slower than 10 s (libFuzzer's -timeout: it found a
# quadratic case in the CSV reader once). The corpus grows in target/fuzz/corpus/TARGET, seeded from
# fuzz/seeds/ and the sample mails and config in the repository; a finding is saved as
# target/fuzz/artifacts/TARGET/crash-* and makes the script fail.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
shift || true
all=(token address oneclick_body unsubscribe_mail complaint_report csv_rows lmtp_command config)
targets=("${@:-${all[@]}}")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing"
export CARGO_TARGET_DIR=target/fuzz/build
# With --target named, RUSTFLAGS reach only the targets' code, not build scripts and
# proc-macros, which do not link libFuzzer.
triple=$(rustc -vV | sed -n 's/^host: //p')
# The fuzz profile (Cargo.toml): debug assertions and overflow checks on.
cargo build --locked --profile fuzz --package optout-milter-fuzz --bins --target "$triple"
bin=$CARGO_TARGET_DIR/$triple/fuzz

for target in "${targets[@]}"; do
    corpus=target/fuzz/corpus/$target
    artifacts=target/fuzz/artifacts/$target/
    mkdir -p "$corpus" "$artifacts"
    case $target in
        unsubscribe_mail) cp -n tests/intake/*.eml "$corpus"/ ;;
        complaint_report) cp -n tests/complaints/*.eml "$corpus"/ ;;
        config) cp -n config/*.toml "$corpus"/ ;;
        *) cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true ;;
    esac
    echo "fuzz: $target for ${seconds}s"
    "$bin/$target" "$corpus" \
        -max_total_time="$seconds" -artifact_prefix="$artifacts" \
        -max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 |
        grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::new_units_added|==[0-9]+==|SUMMARY|panicked|thread .* panicked|INFO: Running)' || true
    if compgen -G "${artifacts}crash-*" >/dev/null || compgen -G "${artifacts}oom-*" >/dev/null \
        || compgen -G "${artifacts}timeout-*" >/dev/null; then
        echo "fuzz: $target found a failing input: $(ls "$artifacts")" >&2
        exit 1
    fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, nothing found"
