# inferq GPU runners: one task group per model-version pool, one GPU per runner, TensorRT.
#
# A pool serves exactly one pinned version (`name@version`) and shares that version's JetStream
# consumer, so adding a runner adds capacity with no coordination. The Nomad Autoscaler sets each
# pool's count from the gauge inferq_desired_runners{model} (backlog, measured throughput and a
# target wait, computed by inferq itself) read from Prometheus with the pass-through strategy.
# A runner stops on SIGTERM after finishing and acking the batch in hand: kill_timeout leaves it
# 90 s, longer than the slowest batch.
#
#   nomad job run -preserve-counts -hcl2-strict=false -var-file=inferq.vars.hcl \
#     inferq-runner-gpu.nomad.hcl
#
# (-preserve-counts keeps the autoscaler's counts when the job is updated.)

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "inferq_gpu_image" {
  type        = string
  description = "Image with inferq[gpu,cassandra] (TensorRT, pycuda) on a CUDA base."
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
  type    = string
  default = "inferq-models"
}

variable "gpu_pools" {
  description = "Pools by group name: the pinned model version, autoscaling bounds, task size."
  type = map(object({
    model     = string
    min       = number
    max       = number
    cpu       = number
    memory_mb = number
  }))
  default = {
    "minilm-v1" = { model = "minilm@1", min = 1, max = 8, cpu = 4000, memory_mb = 8192 }
  }
  validation {
    condition     = length([for p in values(var.gpu_pools) : p if length(split("@", p.model)) != 2]) == 0
    error_message = "Each pool serves one pinned version: write the model as name@version."
  }
  validation {
    condition     = length([for p in values(var.gpu_pools) : p if p.min < 0 || p.min > p.max]) == 0
    error_message = "Each pool needs 0 <= min <= max."
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
  # max(): several processes may export the gauge (one per scheduler replica, say) with the same
  # value; take one. No `or vector(0)`: a missing signal must mean "no scaling action", not
  # "scale to min".
  desired_runners_query = {
    for name, p in var.gpu_pools :
    name => format("ceil(max(inferq_desired_runners{model=%q}))", split("@", p.model)[0])
  }
}

job "inferq-runner-gpu" {
  datacenters = var.datacenters
  type        = "service"
  priority    = 60

  dynamic "group" {
    for_each = var.gpu_pools
    labels   = [group.key]

    content {
      # No count: it starts at scaling.min and the autoscaler owns it from then on.

      scaling {
        enabled = true
        min     = group.value.min
        max     = group.value.max

        policy {
          evaluation_interval = "30s"
          # New GPU runners take minutes to load and warm TensorRT engines: do not flap.
          cooldown = "3m"

          check "desired_runners" {
            source = "prometheus"
            query  = local.desired_runners_query[group.key]

            strategy "pass-through" {}
          }
        }
      }

      spread {
        attribute = "${node.unique.id}"
        weight    = 50
      }

      update {
        max_parallel      = 1
        auto_revert       = true
        health_check      = "task_states"
        min_healthy_time  = "60s"
        healthy_deadline  = "15m"
        progress_deadline = "30m"
      }

      restart {
        attempts = 2
        interval = "10m"
        delay    = "30s"
        mode     = "fail"
      }

      reschedule {
        delay          = "1m"
        delay_function = "exponential"
        max_delay      = "15m"
        unlimited      = true
      }

      network {
        port "metrics" {
          to = 9100
        }
      }

      # Writable: the runner caches its TensorRT engines in <version>/.engines/ on this volume,
      # so only the first start on a node (or a new model, TensorRT or GPU) builds one.
      volume "models" {
        type      = "host"
        source    = var.models_volume
        read_only = false
      }

      service {
        name     = "inferq-runner"
        provider = var.service_provider
        port     = "metrics"
        tags     = ["inferq", "runner", "gpu", "prometheus", "metrics_path=/metrics"]
        meta {
          metrics_path = "/metrics"
          role         = "runner"
          pool         = group.key
          model        = group.value.model
        }
      }

      task "models" {
        driver = "docker"

        lifecycle {
          hook    = "prestart"
          sidecar = false
        }

        config {
          image   = var.inferq_gpu_image
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

      task "runner" {
        driver = "docker"

        config {
          image   = var.inferq_gpu_image
          command = "inferq"
          args    = ["runner", "--model", group.value.model, "--backend", "tensorrt"]
          ports   = ["metrics"]
        }

        volume_mount {
          volume      = "models"
          destination = "/models"
        }

        env {
          INFERQ_HTTP_HOST       = "0.0.0.0"
          INFERQ_METRICS_PORT    = "9100"
          INFERQ_MODEL_REPO      = "/models"
          INFERQ_BACKEND         = "tensorrt"
          INFERQ_STREAM_REPLICAS = "3"
        }

        template {
          destination = "secrets/inferq.env"
          env         = true
          change_mode = "restart"
          splay       = "2m"
          data        = <<-EOT
            {{ with nomadVar "inferq/secrets" -}}
            INFERQ_NATS_URL=${local.nats_url}
            INFERQ_NATS_USER=runner
            INFERQ_NATS_PASSWORD={{ .nats_runner_password }}
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

        # The runner finishes and acks its batch on SIGTERM; anything unacked is redelivered.
        kill_signal  = "SIGTERM"
        kill_timeout = "90s"

        resources {
          cpu    = group.value.cpu
          memory = group.value.memory_mb

          device "nvidia/gpu" {
            count = 1
          }
        }
      }
    }
  }
}
