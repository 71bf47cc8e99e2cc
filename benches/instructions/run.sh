#!/bin/bash
# The daemon's instructions per milter transaction, counted by valgrind's callgrind: a
# deterministic figure, where a rate on two shared cores varies by ±10 % from run to run.
#
#   benches/instructions/run.sh [REV...]     (default: the working tree)
#
# Each REV (a commit, or "." for the working tree) is built in release (a commit in a
# worktree under target/instructions/), started with `serve --init` under callgrind over
# an empty SQLite store, and sent TRANSACTIONS sessions by Debian's miltertest
# (transactions.lua), twice: with SHORT and with LONG sessions. The difference between
# the two runs, divided by LONG - SHORT, is what one transaction costs, start-up and
# shutdown excluded. Callgrind counts user-space instructions only; the last column is
# the daemon's CPU time (user + system, from /proc) per transaction over NATIVE sessions
# run without valgrind. Needs valgrind and miltertest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
SHORT=${SHORT:-100}
LONG=${LONG:-1100}
NATIVE=${NATIVE:-20000}
revs=("$@")
[ ${#revs[@]} -eq 0 ] && revs=(.)
for tool in valgrind miltertest; do
  command -v $tool >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done

build() { # REV -> path of the binary
  local rev=$1
  if [ "$rev" = . ]; then
    (cd "$root" && cargo build --release --locked -q)
    echo "$root/target/release/optout-milter"
    return
  fi
  local commit tree
  commit=$(git -C "$root" rev-parse --short "$rev")
  tree="$root/target/instructions/$commit"
  [ -d "$tree" ] || git -C "$root" worktree add -q --detach "$tree" "$commit"
  # A target folder per commit: with a shared one, cargo does not copy a binary it
  # considers fresh, and the last build's binary would be measured instead.
  (cd "$tree" && CARGO_TARGET_DIR="$tree/target" cargo build --release --locked -q)
  cp "$tree/target/release/optout-milter" "$root/target/instructions/optout-milter-$commit"
  echo "$root/target/instructions/optout-milter-$commit"
}

count() { # BINARY TRANSACTIONS [native] -> instructions executed by the daemon, or
  # with "native", its CPU time in microseconds
  local bin=$1 n=$2 native=${3:-} dir
  dir=$(mktemp -d)
  cat >"$dir/c.toml" <<TOML
[milter]
socket = "unix:$dir/milter.sock"
[store]
url = "sqlite:$dir/consent.db"
[[classify.senders]]
sender = "news@example.com"
list = "weekly"
[unsubscribe]
https_base = "https://u.example.com"
mailto = "u@example.com"
generate_missing_key = true
[[unsubscribe.keys]]
id = 1
file = "$dir/key"
TOML
  if [ -n "$native" ]; then
    OPTOUT_MILTER_LOG=info "$bin" --config "$dir/c.toml" serve --init 2>"$dir/log" &
  else
    OPTOUT_MILTER_LOG=info valgrind -q --tool=callgrind --callgrind-out-file="$dir/cg.out" \
      "$bin" --config "$dir/c.toml" serve --init 2>"$dir/log" &
  fi
  local pid=$!
  for _ in $(seq 600); do
    grep -q "consent index loaded" "$dir/log" 2>/dev/null && [ -S "$dir/milter.sock" ] && break
    sleep 0.1
  done
  MILTER_SOCKET="unix:$dir/milter.sock" TRANSACTIONS=$n miltertest -s "$here/transactions.lua" >"$dir/mt.log" 2>&1 ||
    { cat "$dir/mt.log" "$dir/log" >&2; kill $pid; exit 1; }
  if [ -n "$native" ]; then
    # utime + stime (fields 14 and 15, in clock ticks), start-up included: the caller
    # subtracts a short run.
    local ticks
    ticks=$(awk '{print $14 + $15}' /proc/$pid/stat)
    echo "$ticks" >"$dir/ticks"
  fi
  kill -TERM $pid
  wait $pid || true
  if [ -n "$native" ]; then
    cat "$dir/ticks"
  else
    awk '/^summary:/ {print $2}' "$dir/cg.out"
  fi
  if [ -n "${KEEP:-}" ] && [ -z "$native" ]; then cp "$dir/cg.out" "$KEEP.$n"; fi
  rm -rf "$dir"
}

echo "| build | instructions per transaction | runs ($SHORT and $LONG sessions) | CPU per transaction ($NATIVE sessions, native) |"
echo "|---|---|---|---|"
for rev in "${revs[@]}"; do
  bin=$(build "$rev")
  short=$(count "$bin" "$SHORT")
  long=$(count "$bin" "$LONG")
  name=$rev
  [ "$rev" = . ] && name="working tree ($(git -C "$root" rev-parse --short HEAD)+)"
  hz=$(getconf CLK_TCK)
  base=$(count "$bin" "$SHORT" native)
  native=$(count "$bin" "$NATIVE" native)
  cpu=$(awk -v a="$base" -v b="$native" -v n=$((NATIVE - SHORT)) -v hz="$hz" 'BEGIN {printf "%.1f µs", (b - a) / hz / n * 1e6}')
  echo "| $name | $(( (long - short) / (LONG - SHORT) )) | $short / $long | $cpu |"
done
