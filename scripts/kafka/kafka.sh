#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, combined broker+controller) for busbar's tests.
# No Docker here: the broker jars come from Maven Central through mvn and run on the local JDK.
#
#   kafka.sh fetch
#   kafka.sh up     [--port 9092] [--advertise HOST:PORT] [--dir DIR] [--name NAME] [--controller-port N]
#   kafka.sh down   [--port 9092] [--dir DIR] [--name NAME]
#   kafka.sh status [--port 9092] [--dir DIR] [--name NAME]
#   kafka.sh wait   [--port 9092] [--timeout SECONDS]
set -euo pipefail

KAFKA_VERSION="${BUSBAR_KAFKA_VERSION:-3.9.1}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${BUSBAR_CACHE:-$HOME/.cache/busbar}"
HOME_DIR="$CACHE/kafka-$KAFKA_VERSION"
LIBS="$HOME_DIR/libs"

log() { echo "kafka.sh: $*" >&2; }
die() { log "$*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

fetch() {
  if [[ -f "$LIBS/.complete" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found"
  mkdir -p "$HOME_DIR"
  local tmp="$HOME_DIR/libs.tmp.$$"
  rm -rf "$tmp"
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  mvn -q -B -Dstyle.color=never -f "$SCRIPT_DIR/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >&2
  ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null || die "kafka_2.13 jar missing after fetch"
  touch "$tmp/.complete"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
}

# Parsed options (shared by all subcommands).
PORT=9092
ADVERTISE=""
DIR=""
NAME=""
CONTROLLER_PORT=""
TIMEOUT=300

parse() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --port) PORT="$2"; shift 2 ;;
      --advertise) ADVERTISE="$2"; shift 2 ;;
      --dir) DIR="$2"; shift 2 ;;
      --name) NAME="$2"; shift 2 ;;
      --controller-port) CONTROLLER_PORT="$2"; shift 2 ;;
      --timeout) TIMEOUT="$2"; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  if [[ -z "$NAME" ]]; then
    if [[ "$PORT" == 9092 ]]; then NAME=default; else NAME="port-$PORT"; fi
  fi
  [[ -n "$DIR" ]] || DIR="$HOME_DIR/run/$NAME"
  [[ -n "$ADVERTISE" ]] || ADVERTISE="127.0.0.1:$PORT"
  if [[ -z "$CONTROLLER_PORT" ]]; then
    if (( PORT + 10000 <= 65535 )); then CONTROLLER_PORT=$((PORT + 10000)); else CONTROLLER_PORT=$((PORT - 10000)); fi
  fi
}

running_pid() {
  local pidfile="$DIR/kafka.pid"
  [[ -f "$pidfile" ]] || return 1
  local pid
  pid="$(cat "$pidfile")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

write_config() {
  mkdir -p "$DIR/data"
  cat >"$DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$ADVERTISE
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DIR/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
log.segment.bytes=67108864
EOF
  cat >"$DIR/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$DIR/kafka.log
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
EOF
}

java_cmd() {
  local java="java"
  [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]] && java="$JAVA_HOME/bin/java"
  echo "$java"
}

wait_ready() {
  local deadline=$((SECONDS + TIMEOUT))
  while (( SECONDS < deadline )); do
    if port_open "$PORT" && grep -q "Kafka Server started" "$DIR/kafka.log" 2>/dev/null; then
      return 0
    fi
    if ! running_pid >/dev/null; then
      tail -n 30 "$DIR/kafka.out" "$DIR/kafka.log" >&2 2>/dev/null || true
      die "broker in $DIR exited during startup"
    fi
    sleep 0.3
  done
  tail -n 30 "$DIR/kafka.out" "$DIR/kafka.log" >&2 2>/dev/null || true
  die "broker on port $PORT not ready after ${TIMEOUT}s (see $DIR/kafka.log)"
}

up() {
  parse "$@"
  if running_pid >/dev/null; then
    log "already running (pid $(running_pid), port $PORT)"
    wait_ready
    return 0
  fi
  if port_open "$PORT"; then
    die "port $PORT is taken by another process"
  fi
  fetch
  write_config
  local java
  java="$(java_cmd)"
  if [[ ! -f "$DIR/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$("$java" -cp "$LIBS/*" -Dlog4j.configuration="file:$DIR/log4j.properties" \
      kafka.tools.StorageTool random-uuid)"
    "$java" -cp "$LIBS/*" -Dlog4j.configuration="file:$DIR/log4j.properties" \
      kafka.tools.StorageTool format --cluster-id="$cluster_id" -c "$DIR/server.properties" >"$DIR/format.out" 2>&1 \
      || { cat "$DIR/format.out" >&2; die "format failed"; }
  fi
  : >"$DIR/kafka.log"
  # setsid + nohup: the broker must outlive the shell that started it.
  setsid nohup "$java" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$DIR/log4j.properties" -Dkafka.logs.dir="$DIR" \
    -cp "$LIBS/*" kafka.Kafka "$DIR/server.properties" \
    >"$DIR/kafka.out" 2>&1 </dev/null &
  echo $! >"$DIR/kafka.pid"
  wait_ready
  log "Kafka $KAFKA_VERSION up on 127.0.0.1:$PORT (advertised $ADVERTISE, dir $DIR, pid $(cat "$DIR/kafka.pid"))"
}

down() {
  parse "$@"
  local pid
  if ! pid="$(running_pid)"; then
    log "not running ($DIR)"
    rm -f "$DIR/kafka.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "broker $pid did not stop in 30s, killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/kafka.pid"
  log "stopped ($DIR)"
}

status() {
  parse "$@"
  local pid
  if pid="$(running_pid)" && port_open "$PORT"; then
    echo "running pid=$pid port=$PORT dir=$DIR"
    return 0
  fi
  echo "stopped port=$PORT dir=$DIR"
  return 1
}

wait_port() {
  parse "$@"
  local deadline=$((SECONDS + TIMEOUT))
  until port_open "$PORT"; do
    (( SECONDS < deadline )) || die "nothing answers on 127.0.0.1:$PORT after ${TIMEOUT}s"
    sleep 0.3
  done
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
  fetch) fetch ;;
  up) up "$@" ;;
  down) down "$@" ;;
  status) status "$@" ;;
  wait) wait_port "$@" ;;
  *) die "usage: kafka.sh fetch|up|down|status|wait [--port N] [--advertise HOST:PORT] [--dir DIR] [--name NAME]" ;;
esac
