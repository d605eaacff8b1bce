#!/usr/bin/env bash
# A real MongoDB-protocol server for the tests: FerretDB 1.24 (MongoDB wire protocol over
# SQLite, pure Go) from the Go module proxy, embedded in a small Go main (ferretdb/main.go),
# on 127.0.0.1, data under a temp dir.
#
#   ferretdb.sh start   builds the server (cached under $WIRE_SERVICES_CACHE; Go's own module
#                       and build caches make a rebuild fast) and starts it; prints its
#                       MongoDB URI once it accepts connections
#   ferretdb.sh stop    stops the server this script started (its pid file), nothing else;
#                       its data stays for the next start (`ferretdb.sh clean` removes it)
#   ferretdb.sh status  says whether it serves
#
# FERRETDB_PORT (default 27117) picks the port; WIRE_SERVICES_RUN (default /tmp/wire-services)
# where a server's data and pid live, so a test can run a server of its own beside the
# shared one. FerretDB v1 has no change streams and no transactions (see the MongoDB
# connector's notes).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${WIRE_SERVICES_CACHE:-$HOME/.cache/wire-services}/ferretdb"
run="${WIRE_SERVICES_RUN:-/tmp/wire-services}/ferretdb"
port=${FERRETDB_PORT:-27117}
pidfile="$run/ferretdb.pid"
name=ferretdb
address="mongodb://127.0.0.1:$port/?directConnection=true"
# shellcheck source=lib.sh
. "$here/lib.sh"

# The binary is named by a hash of its sources, so a change to them rebuilds it.
binary() {
  local sum; sum=$(cat "$here/ferretdb/main.go" "$here/ferretdb/go.mod" "$here/ferretdb/go.sum" | sha256sum | cut -c1-16)
  echo "$cache/wire-ferretdb-$sum"
}

install() {
  local bin; bin=$(binary)
  [ -x "$bin" ] && return
  mkdir -p "$cache"
  (cd "$here/ferretdb" && go build -trimpath -o "$bin.tmp.$$" .) \
    || { echo "ferretdb: building the server failed" >&2; exit 1; }
  mv "$bin.tmp.$$" "$bin"
}

launch() {
  mkdir -p "$run/data"
  nohup "$(binary)" -listen "127.0.0.1:$port" -dir "$run/data" >"$run/ferretdb.log" 2>&1 &
  echo $!
}

serving() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

service_main "$@"
