#!/usr/bin/env bash
# Runs units of Redis 7.0.15's own TCL test suite, in external mode, against `ratelab serve`
# (and, with --real, against a real redis-server for the baseline), a fresh server per unit.
#
# The suite is not part of this repository: check out the redis/redis sources at tag 7.0.15
# and pass their root directory (the one holding `runtest` and `tests/`). Needs tclsh 8.5+.
#
#   sim/redis-suite/run.sh /path/to/redis-7.0.15            # against the model
#   sim/redis-suite/run.sh /path/to/redis-7.0.15 --real     # against redis-server, for reference
#   RATELAB_SUITE_UNITS="unit/scripting" sim/redis-suite/run.sh /path/to/redis-7.0.15
#
# Prints one line per unit: passed, failed, and the names of the failing tests.
set -euo pipefail

src=${1:?usage: run.sh REDIS_SOURCE_DIR [--real]}
mode=${2:-model}
here=$(cd "$(dirname "$0")/../.." && pwd)
# RATELAB_SUITE_UNITS="unit/scripting unit/multi" picks other units.
read -r -a units <<<"${RATELAB_SUITE_UNITS:-unit/type/incr unit/expire unit/keyspace unit/type/hash}"
tags="-needs:debug -slow -needs:repl -needs:config-maxmemory -needs:save -needs:reset -needs:config-resetstat"
logs=${RATELAB_SUITE_LOGS:-$(mktemp -d)}
mkdir -p "$logs"

if [ "$mode" != "--real" ]; then
  cargo build --release -q -p sim --manifest-path "$here/Cargo.toml"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for unit in "${units[@]}"; do
  port=$(free_port)
  if [ "$mode" = "--real" ]; then
    redis-server --port "$port" --save '' --appendonly no --daemonize no >/dev/null &
  else
    "$here/target/release/ratelab" serve --port "$port" >/dev/null &
  fi
  server=$!
  for _ in $(seq 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  log="$logs/$(basename "$unit").log"
  (cd "$src" && timeout 900 ./runtest --host 127.0.0.1 --port "$port" --single "$unit" \
     --tags "$tags" --ignore-encoding --ignore-digest --durable >"$log" 2>&1) || true
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  clean=$(sed 's/\x1b\[[0-9;]*m//g' "$log")
  passed=$(grep -c '^\[ok\]' <<<"$clean" || true)
  failed=$(grep -cE '^\[(err|exception)\]' <<<"$clean" || true)
  printf '%-18s passed %3d  failed %3d\n' "$unit" "$passed" "$failed"
  grep -E '^\[(err|exception)\]' <<<"$clean" | sed 's/^/    /' || true
done
echo "logs: $logs"
