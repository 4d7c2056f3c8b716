#!/usr/bin/env bash
# Starts and stops a real Apache Kafka (KRaft: one node, or a cluster of several) and a
# real redis-server on loopback, for development, the demo and the test suite.
#
#   infra.sh up [redis|kafka] | down | status | prepare | reset
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
#   FRAUDSTREAM_KAFKA_NODES nodes (broker + controller each); 3 makes a cluster: internal topics
#                           and the default for new topics replicated 3 ways, min.insync.replicas 2
#   FRAUDSTREAM_KAFKA_PORTS / FRAUDSTREAM_KAFKA_CONTROLLER_PORTS
#                           a cluster's client / controller ports, comma-separated, one per node
#                           (default: FRAUDSTREAM_KAFKA_PORT + 2i and + 2i + 1). A cluster's node i
#                           keeps its data in kafka-i/ and its pid in kafka-i.pid.
#   FRAUDSTREAM_SECURE      1: the broker also listens SASL_SSL (SCRAM-SHA-512, user fraudstream) on
#                           FRAUDSTREAM_KAFKA_SASL_PORT (default: FRAUDSTREAM_KAFKA_PORT + 2) and Redis
#                           speaks TLS only with an ACL user (deploy/local/tls.sh: certificates, passwords)
#   FRAUDSTREAM_REDIS_CLUSTER 1: a Redis Cluster of 6 nodes instead of one server (deploy/local/redis.sh)
#   PYTHON                  interpreter with confluent-kafka for the readiness check
# `up` is idempotent: services already running from this run folder are left alone.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
run_dir=${FRAUDSTREAM_RUN_DIR:-$repo/.run}
kafka_port=${FRAUDSTREAM_KAFKA_PORT:-9092}
controller_port=${FRAUDSTREAM_KAFKA_CONTROLLER_PORT:-$((kafka_port + 1))}
redis_port=${FRAUDSTREAM_REDIS_PORT:-6379}
nodes=${FRAUDSTREAM_KAFKA_NODES:-1}
if [ "$nodes" -gt 1 ]; then
  IFS=, read -r -a node_ports <<<"${FRAUDSTREAM_KAFKA_PORTS:-$(seq -s, "$kafka_port" 2 $((kafka_port + 2 * nodes - 1)))}"
  IFS=, read -r -a node_controller_ports <<<"${FRAUDSTREAM_KAFKA_CONTROLLER_PORTS:-$(seq -s, $((kafka_port + 1)) 2 $((kafka_port + 2 * nodes)))}"
  [ "${#node_ports[@]}" -eq "$nodes" ] && [ "${#node_controller_ports[@]}" -eq "$nodes" ] \
    || { echo "infra: FRAUDSTREAM_KAFKA_PORTS and _CONTROLLER_PORTS need $nodes ports each" >&2; exit 1; }
fi
kafka_lib=${FRAUDSTREAM_KAFKA_LIB:-$repo/.cache/kafka-lib}
kafka_gc=${FRAUDSTREAM_KAFKA_GC:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent}
secure=${FRAUDSTREAM_SECURE:-0}
sasl_port=${FRAUDSTREAM_KAFKA_SASL_PORT:-$((kafka_port + 2))}
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

# shellcheck source=deploy/local/tls.sh
. "$here/tls.sh"
# shellcheck source=deploy/local/redis.sh
. "$here/redis.sh"

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

write_kafka_config() {
  # dir node_id client_port controller_port quorum_line replication min_isr
  local dir=$1 id=$2 port=$3 cport=$4 quorum=$5 rf=$6 isr=$7 listeners advertised
  listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport advertised=PLAINTEXT://127.0.0.1:$port
  if [ "$secure" = 1 ]; then
    # Clients use the SASL_SSL listener; the plaintext one stays for the nodes' own traffic and the readiness probe.
    listeners+=,SASL_SSL://127.0.0.1:$sasl_port advertised+=,SASL_SSL://127.0.0.1:$sasl_port
  fi
  (umask 077 && cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$id
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
$quorum
log.dirs=$dir/data
num.partitions=4
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
message.max.bytes=2097152
log.retention.hours=-1
PROPS
  )
  [ "$secure" = 1 ] && kafka_secure_properties >>"$dir/server.properties"
  cat >"$dir/log4j2.properties" <<LOG
appender.file.type=File
appender.file.name=file
appender.file.fileName=$dir/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
logger.request.name=kafka.request.logger
logger.request.level=WARN
LOG
}

cluster_id() {
  local f=$run_dir/cluster.id
  [ -f "$f" ] || "$python" -c 'import base64,uuid;c=base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=");print(("A"+c[1:]) if c.startswith("-") else c)' >"$f"
  cat "$f"
}

launch_node() {
  # Start one node in the background unless it runs; formats its storage on first start.
  # dir pid_file node_id client_port controller_port quorum_line format_flag heap rf isr
  local dir=$1 pidf=$2 id=$3 port=$4 cport=$5 quorum=$6 format_flag=$7 heap=$8 rf=$9 isr=${10}
  if alive "$pidf"; then info "kafka node $id already running on 127.0.0.1:$port (pid $(cat "$pidf"))"; return; fi
  port_taken "$port" && die "port $port is taken: stop what listens there or set FRAUDSTREAM_KAFKA_PORT(S)"
  port_taken "$cport" && die "port $cport is taken (Kafka controller): set FRAUDSTREAM_KAFKA_CONTROLLER_PORT(S)"
  mkdir -p "$dir/data"
  write_kafka_config "$dir" "$id" "$port" "$cport" "$quorum" "$rf" "$isr"
  if [ -f "$dir/data/meta.properties" ]; then
    info "kafka node $id keeps its data in $dir/data (a clean slate: infra.sh reset)"
    if [ "$secure" = 1 ] && [ ! -f "$dir/data/scram-user" ]; then
      die "FRAUDSTREAM_SECURE needs a broker formatted with its SCRAM user: infra.sh down && infra.sh reset"
    fi
  else
    local scram=""
    if [ "$secure" = 1 ]; then ensure_tls; scram="SCRAM-SHA-512=[name=fraudstream,password=$(secret kafka.password)]"; fi
    # shellcheck disable=SC2086 # the format flag may be empty
    java -cp "$kafka_lib/*" -Dlog4j2.configurationFile="$dir/log4j2.properties" kafka.tools.StorageTool \
      format -t "$(cluster_id)" -c "$dir/server.properties" $format_flag ${scram:+--add-scram "$scram"} >"$dir/format.log" 2>&1 \
      || { cat "$dir/format.log" >&2; die "kafka storage format failed"; }
    [ "$secure" = 1 ] && touch "$dir/data/scram-user"
  fi
  # $kafka_gc defaults to the G1 settings of Kafka's own start script (kafka-run-class.sh): without a
  # pause goal G1 grows the young generation until its pauses reach 30 ms, each one in the pipeline's p99.
  # shellcheck disable=SC2086 # the GC flags are several words
  nohup java -Xms"$heap" -Xmx"$heap" $kafka_gc -Xlog:gc:file="$dir/gc.log":time,uptime -cp "$kafka_lib/*" \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
  echo $! >"$pidf"
}

start_kafka() {
  command -v java >/dev/null || die "java not found: install a Java 17+ JDK (Debian: apt-get install openjdk-17-jdk-headless)"
  ensure_kafka_jars
  local bootstrap dirs=() pids=()
  [ "$secure" = 1 ] && [ "$nodes" -gt 1 ] && die "FRAUDSTREAM_SECURE runs with one node here (FRAUDSTREAM_KAFKA_NODES=1)"
  if [ "$nodes" -le 1 ]; then
    # One node, its own quorum; data in kafka/ (the layout single-node runs always had).
    launch_node "$run_dir/kafka" "$run_dir/kafka.pid" 1 "$kafka_port" "$controller_port" \
      "controller.quorum.bootstrap.servers=127.0.0.1:$controller_port" --standalone 1g 1 1
    bootstrap=127.0.0.1:$kafka_port dirs=("$run_dir/kafka") pids=("$run_dir/kafka.pid")
  else
    local voters="" i
    for i in $(seq 1 "$nodes"); do voters+="${voters:+,}$i@127.0.0.1:${node_controller_ports[$((i - 1))]}"; done
    bootstrap=""
    for i in $(seq 1 "$nodes"); do
      launch_node "$run_dir/kafka-$i" "$run_dir/kafka-$i.pid" "$i" "${node_ports[$((i - 1))]}" \
        "${node_controller_ports[$((i - 1))]}" "controller.quorum.voters=$voters" "" 512m 3 2
      bootstrap+="${bootstrap:+,}127.0.0.1:${node_ports[$((i - 1))]}" dirs+=("$run_dir/kafka-$i") pids+=("$run_dir/kafka-$i.pid")
    done
  fi
  local deadline=$((SECONDS + 120)) k
  while [ $SECONDS -lt $deadline ]; do
    for k in "${!pids[@]}"; do
      if ! alive "${pids[$k]}"; then
        echo "---- kafka log tail (${dirs[$k]}) ----" >&2
        tail -n 30 "${dirs[$k]}/server.log" "${dirs[$k]}/stdout.log" >&2 2>/dev/null || true
        rm -f "${pids[$k]}"
        die "kafka exited during start"
      fi
    done
    if "$python" "$here/ready.py" "$bootstrap" >>"$run_dir/kafka-ready.log" 2>&1; then
      info "kafka ready on $bootstrap ($nodes node(s); transactions work)"
      [ "$secure" = 1 ] && info "kafka SASL_SSL on 127.0.0.1:$sasl_port (SCRAM-SHA-512 user fraudstream; CA $tls_dir/ca.pem)"
      return 0
    fi
    sleep 0.5
  done
  tail -n 30 "${dirs[0]}/server.log" >&2 || true
  die "kafka did not become ready within 120 s (logs: ${dirs[*]})"
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

kafka_names() {
  if [ "$nodes" -le 1 ]; then echo kafka; else seq -f "kafka-%g" 1 "$nodes"; fi
}

status() {
  for name in $(kafka_names) $(redis_names); do
    if alive "$run_dir/$name.pid"; then echo "$name: running (pid $(cat "$run_dir/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

mkdir -p "$run_dir"
case "${1:-}" in
  up)
    # `up redis` / `up kafka` start only that one (tests that need only a Redis).
    [ "${2:-}" = kafka ] || start_redis
    [ "${2:-}" = redis ] || start_kafka ;;
  down) for name in $(kafka_names) $(redis_names); do stop_one "$name"; done ;;
  status) status ;;
  reset)
    for name in $(kafka_names) $(redis_names); do alive "$run_dir/$name.pid" && die "reset: stop the services first (infra.sh down)"; done
    rm -rf "$run_dir/kafka/data" "$run_dir"/kafka-*/data "$run_dir/cluster.id" "$run_dir/redis" "$run_dir"/redis-?
    info "broker data and redis folders deleted" ;;
  prepare) ensure_redis; ensure_kafka_jars; ensure_chromium; info "kafka jars, redis-server and chromium present" ;;
  *) die "usage: infra.sh up|down|status|prepare|reset" ;;
esac
