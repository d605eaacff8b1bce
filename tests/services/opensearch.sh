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
name=opensearch
address=$url
# shellcheck source=lib.sh
. "$here/lib.sh"

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

serving() { curl -sf "$url/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1; }

# Starts the node; prints its pid. Data survives a stop and a start.
launch() {
  nohup java -Xms512m -Xmx1g -cp "$cache/lib/*:$cache" \
    -Dlog4j2.configurationFile="$cache/log4j2.properties" \
    WireOpenSearch "$run/home" "$port" "$transport" >"$run/opensearch.log" 2>&1 &
  echo $!
}

service_main "$@"
