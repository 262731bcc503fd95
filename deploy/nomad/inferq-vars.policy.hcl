# Read access to inferq's Nomad variables (inferq/secrets, inferq/tenants), attached to each job
# that renders them (README.md, "Secrets"). Jobs see only their own nomad/jobs/<job> paths
# otherwise; this shares one set of secrets across the inferq jobs without exposing it to every
# job in the namespace.

namespace "default" {
  variables {
    path "inferq/*" {
      capabilities = ["read"]
    }
  }
}
