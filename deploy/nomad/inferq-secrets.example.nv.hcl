# Nomad variable specification for inferq's secrets (an example: never commit real values).
#
#   cp inferq-secrets.example.nv.hcl /secure/place/inferq-secrets.nv.hcl   # edit there
#   nomad var put -in hcl inferq/secrets @/secure/place/inferq-secrets.nv.hcl
#
# Passwords end up inside URLs: use URL-safe values, e.g. `openssl rand -hex 32`.
# The tenants file is a separate variable (it changes more often):
#
#   nomad var put inferq/tenants tenants_toml=@tenants.toml
#
# With TLS (var.nats_tls, var.redis_tls), the certificates are a third variable, PEM files:
#
#   nomad var put inferq/tls ca_pem=@ca.pem nats_cert_pem=@nats.pem nats_key_pem=@nats-key.pem \
#     redis_cert_pem=@redis.pem redis_key_pem=@redis-key.pem

path = "inferq/secrets"

items {
  # One NATS user per role, each allowed only its own subjects (nats.nomad.hcl renders the
  # server side; SECURITY.md says what each may do). admin creates the streams
  # (inferq-migrate.nomad.hcl: inferq bus provision) and is the operator's user for the nats
  # CLI; route authenticates the NATS servers to each other.
  nats_gateway_password   = "CHANGE-ME-hex"
  nats_scheduler_password = "CHANGE-ME-hex"
  nats_runner_password    = "CHANGE-ME-hex"
  nats_admin_password     = "CHANGE-ME-hex"
  nats_route_password     = "CHANGE-ME-hex"

  # The Redis ACL user "inferq" (redis.nomad.hcl; the default user is off).
  redis_password = "CHANGE-ME-hex"

  # The production result store: Cassandra, replication factor 3 in the local datacenter,
  # LOCAL_QUORUM reads and writes (LOCAL_SERIAL for the idempotency-key and state LWTs).
  results_url = "cassandra://inferq:CHANGE-ME@10.0.2.11,10.0.2.12,10.0.2.13:9042/inferq?dc=dc1&replication=dc1:3&consistency=LOCAL_QUORUM&serial_consistency=LOCAL_SERIAL"
}
