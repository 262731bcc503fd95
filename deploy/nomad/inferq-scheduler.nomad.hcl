# inferq scheduler: fair share over tenants, tokenization, batch forming.
#
# Two replicas share the work safely: they pull from the same durable JetStream consumers (one per
# model, priority and tenant), a chunk is acked only once all its items are in published
# batches, and batches are formed late, so a replica that dies mid-chunk only causes a
# redelivery. The scheduler has no HTTP API; it serves Prometheus metrics on INFERQ_METRICS_PORT.
#
#   nomad job run -hcl2-strict=false -var-file=inferq.vars.hcl inferq-scheduler.nomad.hcl

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "inferq_image" {
  type = string
}

variable "nats_hosts" {
  type = list(string)
}

variable "redis_addr" {
  type = string
}

variable "service_provider" {
  type    = string
  default = "nomad"
}

variable "models_volume" {
  type        = string
  default     = "inferq-models"
  description = "Host volume holding the model repository (the scheduler tokenizes)."
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

job "inferq-scheduler" {
  datacenters = var.datacenters
  type        = "service"
  priority    = 70

  group "scheduler" {
    count = 2

    spread {
      attribute = "${node.unique.id}"
      weight    = 100
    }

    # No readiness endpoint: a replica counts as healthy once it has run for a while without
    # exiting (it exits on a bad config, a missing model or an unreachable NATS at start).
    update {
      max_parallel      = 1
      auto_revert       = true
      health_check      = "task_states"
      min_healthy_time  = "30s"
      healthy_deadline  = "5m"
      progress_deadline = "10m"
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

    network {
      port "metrics" {
        to = 9100
      }
    }

    volume "models" {
      type      = "host"
      source    = var.models_volume
      read_only = false
    }

    service {
      name     = "inferq-scheduler"
      provider = var.service_provider
      port     = "metrics"
      tags     = ["inferq", "scheduler", "prometheus", "metrics_path=/metrics"]
      meta {
        metrics_path = "/metrics"
        role         = "scheduler"
      }
    }

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

    task "scheduler" {
      driver = "docker"

      config {
        image   = var.inferq_image
        command = "inferq"
        args    = ["scheduler"]
        ports   = ["metrics"]
      }

      volume_mount {
        volume      = "models"
        destination = "/models"
        read_only   = true
      }

      env {
        # Metrics must listen beyond loopback to be scraped (see README: contract notes).
        INFERQ_HTTP_HOST       = "0.0.0.0"
        INFERQ_METRICS_PORT    = "9100"
        INFERQ_MODEL_REPO      = "/models"
        INFERQ_TENANTS_FILE    = "${NOMAD_SECRETS_DIR}/tenants.toml"
        INFERQ_STREAM_REPLICAS = "3"
      }

      # No INFERQ_RESULTS_URL: the scheduler never touches the result store.
      template {
        destination = "secrets/inferq.env"
        env         = true
        change_mode = "restart"
        splay       = "60s"
        data        = <<-EOT
          {{ with nomadVar "inferq/secrets" -}}
          INFERQ_NATS_URL=${local.nats_url}
          INFERQ_NATS_USER=scheduler
          INFERQ_NATS_PASSWORD={{ .nats_scheduler_password }}
          INFERQ_REDIS_URL=${local.redis_url}
          INFERQ_REDIS_USERNAME=inferq
          INFERQ_REDIS_PASSWORD={{ .redis_password }}
          %{ if var.nats_tls }INFERQ_NATS_TLS_CA=/secrets/ca.pem%{ endif }
          %{ if var.redis_tls }INFERQ_REDIS_TLS_CA=/secrets/ca.pem%{ endif }
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

      # Tenant weights drive fair share; they are read at start.
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
        cpu    = 2000
        memory = 1024
      }
    }
  }
}
