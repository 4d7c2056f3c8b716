#!/usr/bin/env bash
# Starts and stops a real single-node Apache Kafka (KRaft) and a real redis-server
# on loopback, for development, the demo and the test suite.
#
#   infra.sh up | down | status | prepare | reset
#     prepare: fetch jars, install redis-server
#     up keeps the broker's data across restarts (a crash included); reset (services stopped)
#     deletes it, the one explicit way to start from an empty broker.
#
# Environment (all optional):
#   FRAUDSTREAM_RUN_DIR     where data, pid files and logs live   (default: <repo>/.run)
#   FRAUDSTREAM_KAFKA_PORT  broker client port                    (default: 9092)
#   FRAUDSTREAM_REDIS_PORT  redis port                            (default: 6379)
#   FRAUDSTREAM_KAFKA_LIB   folder of Kafka jars                  (default: <repo>/.cache/kafka-lib)
#   FRAUDSTREAM_KAFKA_GC    the broker JVM's garbage-collector flags (default: G1 as Kafka's start script sets it)
#   PYTHON                  interpreter with confluent-kafka for the readiness check
# `up` is idempotent: services already running from this run folder are left alone.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
run_dir=${FRAUDSTREAM_RUN_DIR:-$repo/.run}
kafka_port=${FRAUDSTREAM_KAFKA_PORT:-9092}
controller_port=${FRAUDSTREAM_KAFKA_CONTROLLER_PORT:-$((kafka_port + 1))}
redis_port=${FRAUDSTREAM_REDIS_PORT:-6379}
kafka_lib=${FRAUDSTREAM_KAFKA_LIB:-$repo/.cache/kafka-lib}
kafka_gc=${FRAUDSTREAM_KAFKA_GC:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent}
python=${PYTHON:-$repo/.venv/bin/python}
[ -x "$python" ] || python=python3

die() { echo "infra: $*" >&2; exit 1; }
info() { echo "infra: $*"; }

alive() {
  # Running, and not a zombie waiting for a parent that is gone (a killed broker is one for a while).
  [ -f "$1" ] || return 1
  local pid; pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]
}

port_taken() {
  # Succeeds when something already accepts connections on 127.0.0.1:$1.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

ensure_kafka_jars() {
  if ls "$kafka_lib"/kafka_2.13-*.jar >/dev/null 2>&1; then return; fi
  command -v java >/dev/null || die "java not found: install a Java 17+ JDK (Debian: apt-get install openjdk-17-jdk-headless)"
  command -v mvn >/dev/null || die "mvn not found: install Maven (Debian: apt-get install maven)"
  info "fetching Kafka jars from Maven Central into $kafka_lib (once per machine)"
  mkdir -p "$kafka_lib"
  if ! mvn -q -B -f "$here/pom.xml" package -Dkafka.lib.dir="$kafka_lib" >"$run_dir/maven.log" 2>&1; then
    tail -n 20 "$run_dir/maven.log" >&2
    die "maven could not fetch the Kafka jars (log: $run_dir/maven.log)"
  fi
}

ensure_redis() {
  command -v redis-server >/dev/null && return
  info "installing redis-server with apt (once per machine)"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq redis-server; } >"$run_dir/apt.log" 2>&1 \
    || { tail -n 20 "$run_dir/apt.log" >&2; die "apt-get could not install redis-server (log: $run_dir/apt.log)"; }
}

ensure_chromium() {
  # Headless Chromium renders backtest reports in the test suite (a screenshot per report).
  command -v chromium >/dev/null && return
  info "installing chromium with apt (once per machine)"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium; } >"$run_dir/apt-chromium.log" 2>&1 \
    || { tail -n 20 "$run_dir/apt-chromium.log" >&2; die "apt-get could not install chromium (log: $run_dir/apt-chromium.log)"; }
}

start_redis() {
  local pidf=$run_dir/redis.pid
  if alive "$pidf"; then info "redis already running on 127.0.0.1:$redis_port (pid $(cat "$pidf"))"; return; fi
  port_taken "$redis_port" && die "port $redis_port is taken: stop what listens there or set FRAUDSTREAM_REDIS_PORT"
  ensure_redis
  mkdir -p "$run_dir/redis"
  redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --dir "$run_dir/redis" --daemonize yes --pidfile "$pidf" --logfile "$run_dir/redis.log" >/dev/null
  for _ in $(seq 1 100); do
    if redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG; then
      info "redis ready on 127.0.0.1:$redis_port"; return
    fi
    sleep 0.1
  done
  tail -n 20 "$run_dir/redis.log" >&2 || true
  die "redis did not answer PING on port $redis_port within 10 s"
}

write_kafka_config() {
  local data=$1
  cat >"$run_dir/kafka/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
log.dirs=$data
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
message.max.bytes=2097152
log.retention.hours=-1
PROPS
  cat >"$run_dir/kafka/log4j2.properties" <<LOG
appender.file.type=File
appender.file.name=file
appender.file.fileName=$run_dir/kafka/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
logger.request.name=kafka.request.logger
logger.request.level=WARN
LOG
}

start_kafka() {
  local pidf=$run_dir/kafka.pid
  if alive "$pidf"; then info "kafka already running on 127.0.0.1:$kafka_port (pid $(cat "$pidf"))"; return; fi
  port_taken "$kafka_port" && die "port $kafka_port is taken: stop what listens there or set FRAUDSTREAM_KAFKA_PORT"
  port_taken "$controller_port" && die "port $controller_port is taken (Kafka controller): set FRAUDSTREAM_KAFKA_CONTROLLER_PORT"
  command -v java >/dev/null || die "java not found: install a Java 17+ JDK (Debian: apt-get install openjdk-17-jdk-headless)"
  ensure_kafka_jars
  local data=$run_dir/kafka/data
  mkdir -p "$data"
  write_kafka_config "$data"
  if [ -f "$data/meta.properties" ]; then
    info "kafka keeps its data in $data (a clean slate: infra.sh reset)"
  else
    local cluster_id
    cluster_id=$("$python" -c 'import base64,uuid;c=base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=");print(("A"+c[1:]) if c.startswith("-") else c)')
    java -cp "$kafka_lib/*" -Dlog4j2.configurationFile="$run_dir/kafka/log4j2.properties" kafka.tools.StorageTool \
      format -t "$cluster_id" -c "$run_dir/kafka/server.properties" --standalone >"$run_dir/kafka/format.log" 2>&1 \
      || { cat "$run_dir/kafka/format.log" >&2; die "kafka storage format failed"; }
  fi
  # $kafka_gc defaults to the G1 settings of Kafka's own start script (kafka-run-class.sh): without a
  # pause goal G1 grows the young generation until its pauses reach 30 ms, each one in the pipeline's p99.
  # shellcheck disable=SC2086 # the GC flags are several words
  nohup java -Xms1g -Xmx1g $kafka_gc -Xlog:gc:file="$run_dir/kafka/gc.log":time,uptime -cp "$kafka_lib/*" \
    -Dlog4j2.configurationFile="$run_dir/kafka/log4j2.properties" \
    kafka.Kafka "$run_dir/kafka/server.properties" >"$run_dir/kafka/stdout.log" 2>&1 &
  echo $! >"$pidf"
  local deadline=$((SECONDS + 90))
  while [ $SECONDS -lt $deadline ]; do
    if ! alive "$pidf"; then
      echo "---- kafka log tail ----" >&2
      tail -n 30 "$run_dir/kafka/server.log" "$run_dir/kafka/stdout.log" >&2 2>/dev/null || true
      rm -f "$pidf"
      die "kafka exited during start"
    fi
    if port_taken "$kafka_port" && "$python" "$here/ready.py" "127.0.0.1:$kafka_port" >>"$run_dir/kafka/ready.log" 2>&1; then
      info "kafka ready on 127.0.0.1:$kafka_port (transactions work)"; return
    fi
    sleep 0.5
  done
  tail -n 30 "$run_dir/kafka/server.log" >&2 || true
  die "kafka did not become ready within 90 s (log: $run_dir/kafka/server.log)"
}

stop_one() {
  local name=$1 pidf=$run_dir/$1.pid
  if ! alive "$pidf"; then rm -f "$pidf"; info "$name not running"; return; fi
  local pid; pid=$(cat "$pidf")
  kill -TERM "$pid"
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; info "$name killed after 30 s"; else info "$name stopped"; fi
  rm -f "$pidf"
}

status() {
  for name in kafka redis; do
    if alive "$run_dir/$name.pid"; then echo "$name: running (pid $(cat "$run_dir/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

mkdir -p "$run_dir"
case "${1:-}" in
  up) start_redis; start_kafka ;;
  down) stop_one kafka; stop_one redis ;;
  status) status ;;
  reset)
    if alive "$run_dir/kafka.pid" || alive "$run_dir/redis.pid"; then die "reset: stop the services first (infra.sh down)"; fi
    rm -rf "$run_dir/kafka/data" "$run_dir/redis"; info "broker data and redis folder deleted" ;;
  prepare) ensure_redis; ensure_kafka_jars; ensure_chromium; info "kafka jars, redis-server and chromium present" ;;
  *) die "usage: infra.sh up|down|status|prepare|reset" ;;
esac
