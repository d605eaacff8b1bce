#!/usr/bin/env bash
# A real Apache Kafka broker for the tests: KRaft (broker and controller in one JVM), from
# Maven Central jars, on 127.0.0.1, data under a temp dir.
#
#   kafka.sh start   installs (cached under $WIRE_SERVICES_CACHE) and starts the broker; prints
#                    its bootstrap address and waits until it serves
#   kafka.sh stop    stops the broker this script started (its pid file), nothing else;
#                    its data stays for the next start (`kafka.sh clean` removes it)
#   kafka.sh status  says whether it runs
#
# KAFKA_PORT (default 19092) and KAFKA_CONTROLLER_PORT (19093) pick the ports;
# WIRE_SERVICES_RUN (default /tmp/wire-services) where a broker's data and pid live, so a
# test can run a broker of its own beside the shared one.
set -euo pipefail
VERSION=${KAFKA_VERSION:-4.4.0}
cache="${WIRE_SERVICES_CACHE:-$HOME/.cache/wire-services}/kafka-$VERSION"
run="${WIRE_SERVICES_RUN:-/tmp/wire-services}/kafka"
port=${KAFKA_PORT:-19092}
ctrl=${KAFKA_CONTROLLER_PORT:-19093}
pidfile="$run/kafka.pid"
name=kafka
address="127.0.0.1:$port"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

install() {
  [ -f "$cache/.installed" ] && return
  mkdir -p "$cache"
  cat >"$cache/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>wire.tests</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.16</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
POM
  (cd "$cache" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib >/dev/null)
  cat >"$cache/log4j2.properties" <<'LOG'
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
LOG
  touch "$cache/.installed"
}

# Writes the config, formats the storage the first time, starts the broker; prints its pid.
launch() {
  # Data survives a stop and a start (a test stops the broker mid-run and starts it again).
  mkdir -p "$run/data"
  cat >"$run/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctrl
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctrl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$run/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
  local java=(java -Xmx512m -cp "$cache/lib/*" -Dlog4j2.configurationFile="$cache/log4j2.properties")
  if [ ! -f "$run/data/meta.properties" ]; then
    "${java[@]}" kafka.tools.StorageTool format -t "$("${java[@]}" kafka.tools.StorageTool random-uuid)" \
      -c "$run/server.properties" >"$run/format.log" 2>&1 \
      || { echo "kafka: formatting the storage failed:" >&2; cat "$run/format.log" >&2; exit 1; }
  fi
  nohup "${java[@]}" kafka.Kafka "$run/server.properties" >"$run/kafka.log" 2>&1 &
  echo $!
}

serving() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

service_main "$@"
