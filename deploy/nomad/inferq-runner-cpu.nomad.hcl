# inferq CPU runners: OpenVINO or ONNX Runtime pools, one group per model-version pool.
#
# For model versions without a GPU pool, for regions without GPUs, or as a small always-on
# floor. A CPU pool serving the same version as a GPU pool shares its JetStream consumer: CPU
# runners then take batches too and, being slower, lengthen the tail. Autoscaling is off by
# default for that reason: inferq_desired_runners{model} counts runners of the measured speed,
# which is ambiguous when one version is served by GPU and CPU runners at once. Turn it on
# (autoscale = true) only for a version that no GPU pool serves.
#
# Each runner gets whole cores (resources.cores) and as many inference threads, so two runners on
# one node never fight over the same cores.
#
#   nomad job run -preserve-counts -hcl2-strict=false -var-file=inferq.vars.hcl \
#     inferq-runner-cpu.nomad.hcl

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
  type    = string
  default = "inferq-models"
}

variable "cpu_pools" {
  description = "Pools by group name: pinned model version, backend, size, count and scaling."
  type = map(object({
    model     = string
    backend   = string
    cores     = number
    memory_mb = number
    count     = number
    autoscale = bool
    max       = number
  }))
  default = {
    "minilm-v1-cpu" = {
      model = "minilm@1", backend = "auto", cores = 8, memory_mb = 4096,
      count = 1, autoscale = false, max = 8
    }
  }
  validation {
    condition     = length([for p in values(var.cpu_pools) : p if length(split("@", p.model)) != 2]) == 0
    error_message = "Each pool serves one pinned version: write the model as name@version."
  }
  validation {
    condition = length([for p in values(var.cpu_pools) : p if !contains(
      ["auto", "onnxruntime", "openvino", "openvino-f32", "openvino-bf16"], p.backend)]) == 0
    error_message = "CPU backends are auto, onnxruntime, openvino, openvino-f32, openvino-bf16."
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
  desired_runners_query = {
    for name, p in var.cpu_pools :
    name => format("ceil(max(inferq_desired_runners{model=%q}))", split("@", p.model)[0])
  }
}

job "inferq-runner-cpu" {
  datacenters = var.datacenters
  type        = "service"
  priority    = 60

  dynamic "group" {
    for_each = var.cpu_pools
    labels   = [group.key]

    content {
      count = group.value.count

      scaling {
        enabled = group.value.autoscale
        min     = group.value.count
        max     = group.value.max

        policy {
          evaluation_interval = "30s"
          cooldown            = "2m"

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
        healthy_deadline  = "10m"
        progress_deadline = "20m"
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

      volume "models" {
        type      = "host"
        source    = var.models_volume
        read_only = false
      }

      service {
        name     = "inferq-runner"
        provider = var.service_provider
        port     = "metrics"
        tags     = ["inferq", "runner", "cpu", "prometheus", "metrics_path=/metrics"]
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

      task "runner" {
        driver = "docker"

        config {
          image   = var.inferq_image
          command = "inferq"
          args    = ["runner", "--model", group.value.model, "--backend", group.value.backend]
          ports   = ["metrics"]
        }

        volume_mount {
          volume      = "models"
          destination = "/models"
          read_only   = true
        }

        env {
          INFERQ_HTTP_HOST       = "0.0.0.0"
          INFERQ_METRICS_PORT    = "9100"
          INFERQ_MODEL_REPO      = "/models"
          INFERQ_BACKEND         = group.value.backend
          INFERQ_BACKEND_THREADS = format("%d", group.value.cores)
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

        kill_signal  = "SIGTERM"
        kill_timeout = "90s"

        resources {
          cores  = group.value.cores
          memory = group.value.memory_mb
        }
      }
    }
  }
}
