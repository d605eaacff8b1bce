# What the service scripts share (sourced by kafka.sh, opensearch.sh and ferretdb.sh). A script sets
# `name`, `run` (its run dir), `pidfile` and `address`, and defines `install`, `launch`
# (starts the server in the background and prints its pid) and `serving`; then calls
# `service_main "$@"`.

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

# Starts the server unless it serves already; waits up to $1 seconds for it to serve.
service_start() {
  local wait=$1 log="$run/$name.log"
  # One install at a time per service: tests that start their own instance of a service run
  # this script side by side, and on a machine without the cache they would build or
  # download into the same place at once.
  mkdir -p "$cache"
  (
    flock 9
    install
  ) 9>"$cache/.install.lock" || exit 1
  if running && serving; then echo "$address"; return; fi
  if running; then service_stop; fi
  mkdir -p "$run"
  launch >"$pidfile"
  for _ in $(seq $((wait * 10))); do
    if serving; then echo "$address"; return; fi
    running || { echo "$name: the server exited; see $log" >&2; tail -20 "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$name: not serving on $address after ${wait}s; see $log" >&2
  exit 1
}

# Stops the server this script started (its pid file), nothing else.
service_stop() {
  if running; then
    local pid; pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

service_main() {
  case "${1:-}" in
    start) service_start "${START_WAIT:-120}" ;;
    stop) service_stop ;;
    clean) service_stop; rm -rf "$run" ;;
    status) if running && serving; then echo "$name: serving on $address"; else echo "$name: stopped"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|status|clean" >&2; exit 2 ;;
  esac
}
