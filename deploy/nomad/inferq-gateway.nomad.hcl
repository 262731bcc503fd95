# inferq gateway: the stateless HTTP front (POST /v1/jobs, status, results).
#
# Readiness (/readyz: NATS, Redis and the result store answer) gates rollouts and load-balancer
# membership; liveness (/healthz) restarts a hung process. Secrets (NATS and Redis passwords, the
# Cassandra URL, the tenants file) come from Nomad variables through templates, never from env
# in this file. Run with the shared variables file:
#
#   nomad job run -hcl2-strict=false -var-file=inferq.vars.hcl inferq-gateway.nomad.hcl

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "inferq_image" {
  type        = string
  description = "Container image with inferq[cassandra] installed and `inferq` on PATH."
}

variable "nats_hosts" {
  type        = list(string)
  description = "Addresses of the three NATS servers (see nats.nomad.hcl)."
}

variable "redis_addr" {
  type        = string
  description = "host:port of Redis (see redis.nomad.hcl)."
}

variable "service_provider" {
  type    = string
  default = "nomad"
}

variable "models_volume" {
  type        = string
  default     = "inferq-models"
  description = "Host volume holding the model repository (the gateway resolves model aliases)."
}

variable "gateway_count" {
  type    = number
  default = 3
  validation {
    condition     = var.gateway_count >= 2
    error_message = "Run at least two gateways so a rollout or a lost node never takes the API down."
  }
}

variable "nats_tls" {
  type        = bool
  default     = false
  description = "NATS requires TLS (nats.nomad.hcl var.nats_tls): verify it with inferq/tls ca_pem."
}

variable "redis_tls" {
  type        = bool
  default     = false
  description = "Redis requires TLS (redis.nomad.hcl var.redis_tls): rediss://, verified with inferq/tls ca_pem."
}

locals {
  # No credentials in URLs: the role's NATS user and the Redis ACL user come as settings.
  nats_url  = join(",", [for h in var.nats_hosts : "nats://${h}:4222"])
  redis_url = "${var.redis_tls ? "rediss" : "redis"}://${var.redis_addr}/0"
}

job "inferq-gateway" {
  datacenters = var.datacenters
  type        = "service"
  priority    = 70

  group "gateway" {
    count = var.gateway_count

    # Prefer one gateway per host (soft: a small cluster still places them all).
    spread {
      attribute = "${node.unique.id}"
      weight    = 100
    }

    update {
      max_parallel      = 1
      canary            = 1
      auto_promote      = true
      auto_revert       = true
      health_check      = "checks"
      min_healthy_time  = "15s"
      healthy_deadline  = "3m"
      progress_deadline = "10m"
    }

    migrate {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "15s"
      healthy_deadline = "3m"
    }

    restart {
      attempts = 3
      interval = "5m"
      delay    = "10s"
      mode     = "fail"
    }

    reschedule {
      delay          = "30s"
      delay_function = "exponential"
      max_delay      = "10m"
      unlimited      = true
    }

    # Deregister first, then wait, then SIGTERM: load balancers stop sending before the
    # process stops accepting.
    shutdown_delay = "10s"

    network {
      port "http" {
        to = 8000
      }
    }

    volume "models" {
      type      = "host"
      source    = var.models_volume
      read_only = false
    }

    service {
      name     = "inferq-gateway"
      provider = var.service_provider
      port     = "http"
      task     = "gateway" # check_restart restarts this task (the group also has a prestart)
      # "prometheus" + metrics_path: scraped by the nomad_sd/consul_sd job in README.md.
      tags = ["inferq", "gateway", "prometheus", "metrics_path=/metrics"]
      meta {
        metrics_path = "/metrics"
        role         = "gateway"
      }

      check {
        name     = "readyz"
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
      }

      check {
        name     = "healthz"
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    # Makes sure the default model is in this node's repository (a no-op once built; the
    # build takes a lock, so allocations on one node do not race).
    task "models" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      config {
        image   = var.inferq_image
        command = "inferq"
        args    = ["models", "build", "minilm", "--repo", "/models"]
      }

      volume_mount {
        volume      = "models"
        destination = "/models"
      }

      resources {
        cpu    = 1000
        memory = 2048
      }
    }

    task "gateway" {
      driver = "docker"

      config {
        image   = var.inferq_image
        command = "inferq"
        args    = ["gateway"]
        ports   = ["http"]
      }

      volume_mount {
        volume      = "models"
        destination = "/models"
        read_only   = true
      }

      env {
        INFERQ_HTTP_HOST       = "0.0.0.0"
        INFERQ_HTTP_PORT       = "8000"
        INFERQ_MODEL_REPO      = "/models"
        INFERQ_TENANTS_FILE    = "${NOMAD_SECRETS_DIR}/tenants.toml"
        INFERQ_STREAM_REPLICAS = "3"
      }

      template {
        destination = "secrets/inferq.env"
        env         = true
        change_mode = "restart"
        splay       = "60s"
        data        = <<-EOT
          {{ with nomadVar "inferq/secrets" -}}
          INFERQ_NATS_URL=${local.nats_url}
          INFERQ_NATS_USER=gateway
          INFERQ_NATS_PASSWORD={{ .nats_gateway_password }}
          INFERQ_REDIS_URL=${local.redis_url}
          INFERQ_REDIS_USERNAME=inferq
          INFERQ_REDIS_PASSWORD={{ .redis_password }}
          %{ if var.nats_tls }INFERQ_NATS_TLS_CA=/secrets/ca.pem%{ endif }
          %{ if var.redis_tls }INFERQ_REDIS_TLS_CA=/secrets/ca.pem%{ endif }
          INFERQ_RESULTS_URL={{ .results_url | toJSON }}
          {{- end }}
        EOT
      }

      # The CA that signed the NATS and Redis certificates (var.nats_tls, var.redis_tls).
      dynamic "template" {
        for_each = var.nats_tls || var.redis_tls ? ["ca.pem"] : []
        content {
          destination = "secrets/${template.value}"
          change_mode = "restart"
          data        = "{{ with nomadVar \"inferq/tls\" }}{{ .ca_pem }}{{ end }}"
        }
      }

      # API keys are read at start: a changed tenants file restarts gateways, spread over a
      # minute so they do not all restart at once.
      template {
        destination = "secrets/tenants.toml"
        change_mode = "restart"
        splay       = "60s"
        data        = <<-EOT
          {{ with nomadVar "inferq/tenants" }}{{ .tenants_toml }}{{ end }}
        EOT
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu    = 1000
        memory = 1024
      }
    }
  }
}
