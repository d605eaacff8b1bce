#!/usr/bin/env bash
# A real OpenSearch 2.19 node (the Elasticsearch 7 REST API) for the tests: the server and
# its HTTP and analysis plugins from Maven Central, embedded in a small Java main
# (opensearch/WireOpenSearch.java), on 127.0.0.1, data under a temp dir.
#
#   opensearch.sh start   installs (cached under $WIRE_SERVICES_CACHE) and starts the node;
#                         prints its URL once the cluster is yellow
#   opensearch.sh stop    stops the node this script started (its pid file), nothing else;
#                         its data stays for the next start (`opensearch.sh clean` removes it)
#   opensearch.sh status  says whether it serves
#
# OPENSEARCH_PORT (default 19200) and OPENSEARCH_TRANSPORT_PORT (19300) pick the ports;
# WIRE_SERVICES_RUN (default /tmp/wire-services) where a node's data and pid live.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
VERSION=${OPENSEARCH_VERSION:-2.19.6}
cache="${WIRE_SERVICES_CACHE:-$HOME/.cache/wire-services}/opensearch-$VERSION"
run="${WIRE_SERVICES_RUN:-/tmp/wire-services}/opensearch"
port=${OPENSEARCH_PORT:-19200}
transport=${OPENSEARCH_TRANSPORT_PORT:-19300}
pidfile="$run/opensearch.pid"
url="http://127.0.0.1:$port"

install() {
  if [ -f "$cache/.installed" ] && [ "$cache/WireOpenSearch.class" -nt "$here/opensearch/WireOpenSearch.java" ]; then
    return
  fi
  mkdir -p "$cache"
  cat >"$cache/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>wire.tests</groupId><artifactId>opensearch-node</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.opensearch</groupId><artifactId>opensearch</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.opensearch.plugin</groupId><artifactId>transport-netty4-client</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.opensearch.plugin</groupId><artifactId>analysis-common</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.opensearch</groupId><artifactId>opensearch-plugin-classloader</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>2.21.0</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.21.0</version></dependency>
    <dependency><groupId>org.locationtech.jts</groupId><artifactId>jts-core</artifactId><version>1.15.0</version></dependency>
    <dependency><groupId>org.locationtech.spatial4j</groupId><artifactId>spatial4j</artifactId><version>0.7</version></dependency>
  </dependencies>
</project>
POM
  (cd "$cache" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib >/dev/null)
  javac -cp "$cache/lib/*" -d "$cache" "$here/opensearch/WireOpenSearch.java"
  cat >"$cache/log4j2.properties" <<'LOG'
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
LOG
  touch "$cache/.installed"
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
serving() { curl -sf "$url/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1; }

start() {
  install
  if running && serving; then echo "$url"; return; fi
  if running; then stop; fi
  mkdir -p "$run"
  nohup java -Xms512m -Xmx1g -cp "$cache/lib/*:$cache" \
    -Dlog4j2.configurationFile="$cache/log4j2.properties" \
    WireOpenSearch "$run/home" "$port" "$transport" >"$run/opensearch.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 240); do
    if serving; then echo "$url"; return; fi
    running || { echo "opensearch: the node exited; see $run/opensearch.log" >&2; tail -20 "$run/opensearch.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "opensearch: not serving on $url after 120s; see $run/opensearch.log" >&2
  exit 1
}

stop() {
  if running; then
    local pid; pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  clean) stop; rm -rf "$run" ;;
  status) if running && serving; then echo "opensearch: serving on $url"; else echo "opensearch: stopped"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status|clean" >&2; exit 2 ;;
esac
