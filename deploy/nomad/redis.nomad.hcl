# Redis for inferq: job counters and state cache, rate-limit buckets.
#
# What matters:
# - `maxmemory-policy noeviction`: inferq refuses to start against anything else. An evicted
#   "item done" mark would let a redelivered batch count its items twice, or never finish a job;
#   with noeviction a full Redis refuses writes, which inferq turns into retryable 503s.
# - AOF (`appendonly yes`) on a host volume. `appendfsync always` by default: a counter
#   increment acknowledged to a runner (which then acks NATS) must not vanish in a power loss,
#   or that job could never reach its terminal state. `everysec` trades up to a second of
#   such risk for write latency; choose it knowingly (var.redis_appendfsync).
# - ACL users: `default` is off, and inferq connects as `inferq` (password from the Nomad variable
#   inferq/secrets), which may touch only inferq's keys (`inferq:*`), no pub/sub channel, and no
#   @dangerous command (FLUSHALL, KEYS, DEBUG, CONFIG SET, MONITOR, ...) except CONFIG GET,
#   which inferq's start-up check of maxmemory-policy reads (tests/store/test_redis_tls.py runs
#   the whole flow under exactly this rule and finds nothing refused in ACL LOG);
# - TLS (var.redis_tls): only TLS connections, with the certificate from the Nomad variable
#   inferq/tls (items ca_pem, redis_cert_pem, redis_key_pem).
# One instance, pinned to the host of var.redis_addr where its host volume lives. (Redis is a
# cache in inferq's design: statuses are rebuilt from the result store when keys are missing.)
#
#   nomad job run -hcl2-strict=false -var-file=inferq.vars.hcl redis.nomad.hcl

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "redis_addr" {
  type        = string
  description = "host:port clients use; the job is pinned to that host."
}

variable "redis_image" {
  type    = string
  default = "redis:7.2-alpine"
}

variable "redis_volume" {
  type    = string
  default = "redis-data"
}

variable "redis_memory_mb" {
  type        = number
  default     = 8192
  description = "Task memory; Redis's maxmemory is set to three quarters of it (AOF rewrite room)."
}

variable "redis_appendfsync" {
  type    = string
  default = "always"
  validation {
    condition     = contains(["always", "everysec"], var.redis_appendfsync)
    error_message = "appendfsync is always (default) or everysec."
  }
}

variable "redis_tls" {
  type        = bool
  default     = false
  description = "Accept TLS connections only (clients use rediss:// and inferq/tls ca_pem)."
}

variable "service_provider" {
  type    = string
  default = "nomad"
}

job "inferq-redis" {
  datacenters = var.datacenters
  type        = "service"
  priority    = 80

  group "redis" {
    count = 1

    constraint {
      attribute = "${attr.unique.network.ip-address}"
      value     = split(":", var.redis_addr)[0]
    }

    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "10s"
      healthy_deadline = "5m"
      auto_revert      = false
    }

    restart {
      attempts = 10
      interval = "30m"
      delay    = "10s"
      mode     = "delay"
    }

    volume "data" {
      type      = "host"
      source    = var.redis_volume
      read_only = false
    }

    network {
      port "redis" {
        static = split(":", var.redis_addr)[1]
        to     = 6379
      }
    }

    service {
      name     = "inferq-redis"
      provider = var.service_provider
      port     = "redis"
      tags     = ["inferq", "redis"]

      check {
        name     = "tcp"
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "redis" {
      driver = "docker"

      config {
        image   = var.redis_image
        command = "redis-server"
        args    = ["/secrets/redis.conf"]
        ports   = ["redis"]
      }

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      template {
        destination = "secrets/redis.conf"
        change_mode = "restart"
        data        = <<-EOT
          bind 0.0.0.0
          %{ if var.redis_tls }
          port 0
          tls-port 6379
          tls-cert-file /secrets/redis.pem
          tls-key-file /secrets/redis-key.pem
          tls-ca-cert-file /secrets/ca.pem
          # Clients prove themselves with the ACL password; set yes to require certificates.
          tls-auth-clients no
          %{ else }
          port 6379
          %{ endif }
          protected-mode yes
          user default off
          user inferq on >{{ with nomadVar "inferq/secrets" }}{{ .redis_password }}{{ end }} ~inferq:* resetchannels +@all -@dangerous +config|get
          dir /data
          maxmemory ${floor(var.redis_memory_mb * 3 / 4)}mb
          maxmemory-policy noeviction
          appendonly yes
          appendfsync ${var.redis_appendfsync}
          aof-use-rdb-preamble yes
          save ""
        EOT
      }

      dynamic "template" {
        for_each = var.redis_tls ? {
          "ca.pem"        = "ca_pem"
          "redis.pem"     = "redis_cert_pem"
          "redis-key.pem" = "redis_key_pem"
        } : {}
        content {
          destination = "secrets/${template.key}"
          change_mode = "restart"
          perms       = "0644"
          data        = "{{ with nomadVar \"inferq/tls\" }}{{ .${template.value} }}{{ end }}"
        }
      }

      # Redis fsyncs the AOF and exits on SIGTERM.
      kill_signal  = "SIGTERM"
      kill_timeout = "60s"

      resources {
        cpu    = 1000
        memory = var.redis_memory_mb
      }
    }
  }
}
