# Sourced by infra.sh: certificates and passwords for FRAUDSTREAM_SECURE=1, made once per run
# folder with openssl and kept in $run_dir/tls (mode 700):
#   ca.pem                 the local CA clients trust (kafka.ssl_ca_location, redis.tls_ca)
#   server.pem/server.key  the brokers' and Redis' certificate, for localhost and 127.0.0.1
#   broker.p12             the same key and chain as the broker's PKCS12 keystore
#   kafka.password         SCRAM-SHA-512 password of the Kafka user `fraudstream`
#   redis.password         ACL password of the Redis user `fraudstream` (the default user is off)
#   keystore.password      the keystore's password
# Nothing here is committed: each run folder gets random passwords of its own.

tls_dir=$run_dir/tls

secret() {
  # The password in $tls_dir/$1, made on first use.
  local f=$tls_dir/$1
  [ -s "$f" ] || (umask 077 && openssl rand -hex 24 >"$f")
  cat "$f"
}

ensure_tls() {
  command -v openssl >/dev/null || die "openssl not found (Debian: apt-get install openssl)"
  mkdir -p "$tls_dir" && chmod 700 "$tls_dir"
  [ -s "$tls_dir/broker.p12" ] && return
  info "making a local CA and a server certificate in $tls_dir"
  (
    cd "$tls_dir" && umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 825 \
      -subj "/CN=fraudstream local CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 825 \
      -extfile server.ext 2>/dev/null
    openssl pkcs12 -export -in server.pem -inkey server.key -certfile ca.pem -name broker \
      -out broker.p12.tmp -passout "pass:$(secret keystore.password)"
    mv broker.p12.tmp broker.p12
    rm -f server.csr server.ext ca.srl
  ) || die "openssl could not make the certificates in $tls_dir"
}

kafka_secure_properties() {
  # The SASL_SSL listener's broker settings (appended to server.properties).
  cat <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls_dir/broker.p12
ssl.keystore.password=$(secret keystore.password)
ssl.key.password=$(secret keystore.password)
ssl.client.auth=none
PROPS
}
