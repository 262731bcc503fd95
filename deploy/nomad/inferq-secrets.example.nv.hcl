# Nomad variable specification for inferq's secrets (an example: never commit real values).
#
#   cp inferq-secrets.example.nv.hcl /secure/place/inferq-secrets.nv.hcl   # edit there
#   nomad var put -in hcl inferq/secrets @/secure/place/inferq-secrets.nv.hcl
#
# Passwords end up inside URLs: use URL-safe values, e.g. `openssl rand -hex 32`.
# The tenants file is a separate variable (it changes more often):
#
#   nomad var put inferq/tenants tenants_toml=@tenants.toml

path = "inferq/secrets"

items {
  # NATS clients authenticate as user "inferq" (nats.nomad.hcl renders the server side).
  nats_password = "CHANGE-ME-hex"

  # Redis requirepass (redis.nomad.hcl) and the password in every INFERQ_REDIS_URL.
  redis_password = "CHANGE-ME-hex"

  # The production result store: Cassandra, replication factor 3 in the local datacenter,
  # LOCAL_QUORUM reads and writes (LOCAL_SERIAL for the idempotency-key and state LWTs).
  results_url = "cassandra://inferq:CHANGE-ME@10.0.2.11,10.0.2.12,10.0.2.13:9042/inferq?dc=dc1&replication=dc1:3&consistency=LOCAL_QUORUM&serial_consistency=LOCAL_SERIAL"
}
