# Sourced by infra.sh: redis-server on loopback, in one of three shapes:
#   default                    one plaintext server on $redis_port (redis.pid, redis/)
#   FRAUDSTREAM_SECURE=1       one server speaking TLS only on $redis_port, the default user
#                              off and an ACL user `fraudstream` (password in tls/redis.password)
#   FRAUDSTREAM_REDIS_CLUSTER=1 a Redis Cluster of 3 primaries + 3 replicas on
#                              FRAUDSTREAM_REDIS_PORTS (default: $redis_port .. +5), cluster bus on
#                              FRAUDSTREAM_REDIS_BUS_PORTS (default: each port + 10000); node i
#                              keeps its files in redis-i/ and its pid in redis-i.pid

redis_cluster=${FRAUDSTREAM_REDIS_CLUSTER:-0}
if [ "$redis_cluster" = 1 ]; then
  IFS=, read -r -a redis_ports <<<"${FRAUDSTREAM_REDIS_PORTS:-$(seq -s, "$redis_port" $((redis_port + 5)))}"
  IFS=, read -r -a redis_bus_ports <<<"${FRAUDSTREAM_REDIS_BUS_PORTS:-$(seq -s, $((redis_port + 10000)) $((redis_port + 10005)))}"
  [ "${#redis_ports[@]}" -eq 6 ] && [ "${#redis_bus_ports[@]}" -eq 6 ] \
    || die "FRAUDSTREAM_REDIS_PORTS and _BUS_PORTS need 6 ports each (3 primaries, 3 replicas)"
fi

redis_names() {
  if [ "$redis_cluster" = 1 ]; then seq -f "redis-%g" 1 6; else echo redis; fi
}

redis_ping() {
  # redis_ping port: PONG from that server, over TLS as the ACL user in secure mode.
  if [ "$secure" = 1 ]; then
    REDISCLI_AUTH=$(secret redis.password) redis-cli --tls --cacert "$tls_dir/ca.pem" -h 127.0.0.1 -p "$1" \
      --user fraudstream ping 2>/dev/null
  else
    redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null
  fi
}

launch_redis() {
  # launch_redis name port [extra config lines]: one daemonized server from a config file
  # (mode 600: the ACL password is in it, not in the process list).
  local name=$1 port=$2 extra=${3:-} pidf=$run_dir/$1.pid dir=$run_dir/$1
  if alive "$pidf"; then info "$name already running on 127.0.0.1:$port (pid $(cat "$pidf"))"; return 1; fi
  port_taken "$port" && die "port $port is taken: stop what listens there or set FRAUDSTREAM_REDIS_PORT(S)"
  mkdir -p "$dir"
  (umask 077 && cat >"$dir/redis.conf" <<CONF
bind 127.0.0.1
save ""
appendonly no
dir $dir
daemonize yes
pidfile $pidf
logfile $run_dir/$name.log
$extra
CONF
  )
  redis-server "$dir/redis.conf" >/dev/null || die "$name did not start (log: $run_dir/$name.log)"
}

wait_redis() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do
    if redis_ping "$port" | grep -q PONG; then return; fi
    sleep 0.1
  done
  tail -n 20 "$run_dir/$name.log" >&2 || true
  die "$name did not answer PING on port $port within 10 s"
}

start_redis() {
  ensure_redis
  if [ "$redis_cluster" = 1 ]; then start_redis_cluster; return; fi
  local config="port $redis_port"
  if [ "$secure" = 1 ]; then
    ensure_tls
    config="port 0
tls-port $redis_port
tls-cert-file $tls_dir/server.pem
tls-key-file $tls_dir/server.key
tls-ca-cert-file $tls_dir/ca.pem
tls-auth-clients no
user default off
user fraudstream on >$(secret redis.password) ~* &* +@all"
  fi
  launch_redis redis "$redis_port" "$config" || return 0
  wait_redis "$redis_port" redis
  info "redis ready on 127.0.0.1:$redis_port$([ "$secure" = 1 ] && echo " (TLS, ACL user fraudstream)")"
}

start_redis_cluster() {
  [ "$secure" = 1 ] && die "FRAUDSTREAM_SECURE and FRAUDSTREAM_REDIS_CLUSTER do not combine here"
  local i started=0
  for i in $(seq 0 5); do
    if launch_redis "redis-$((i + 1))" "${redis_ports[$i]}" "port ${redis_ports[$i]}
cluster-enabled yes
cluster-port ${redis_bus_ports[$i]}
cluster-config-file $run_dir/redis-$((i + 1))/nodes.conf
cluster-node-timeout 2000
cluster-require-full-coverage no"; then started=1; fi
  done
  for i in $(seq 0 5); do wait_redis "${redis_ports[$i]}" "redis-$((i + 1))"; done
  if redis-cli -p "${redis_ports[0]}" cluster info | grep -q "cluster_known_nodes:1"; then
    local nodes=() p
    for p in "${redis_ports[@]}"; do nodes+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$run_dir/redis-cluster.log" 2>&1 \
      || { tail -n 20 "$run_dir/redis-cluster.log" >&2; die "redis-cli --cluster create failed"; }
  fi
  local deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    local ok=0
    for p in "${redis_ports[@]}"; do redis-cli -p "$p" cluster info 2>/dev/null | grep -q "cluster_state:ok" && ok=$((ok + 1)); done
    if [ "$ok" -eq 6 ]; then
      info "redis cluster ready on 127.0.0.1:${redis_ports[0]}..${redis_ports[5]} (3 primaries, 3 replicas)"; return
    fi
    sleep 0.2
  done
  [ "$started" = 1 ] && tail -n 20 "$run_dir/redis-cluster.log" >&2 2>/dev/null
  die "the redis cluster did not reach cluster_state:ok within 60 s"
}
