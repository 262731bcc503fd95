# NATS JetStream for inferq: a three-server cluster that holds R3 streams (JOBS, BATCHES, DLQ).
#
# What matters for inferq's guarantees:
# - three servers on three hosts, so an R3 stream keeps a quorum through one lost host;
# - `sync_interval: always`: a PubAck means the message was fsynced on a quorum, so an accepted
#   job (the gateway answers 202 only after the PubAck) survives a power loss, not only a crash;
# - file storage on a host volume on each server's host (local NVMe: every write is fsynced);
# - max_payload matches the streams' largest message (BATCHES: 8 MiB).
# inferq creates the streams itself with INFERQ_STREAM_REPLICAS=3 (set in every inferq job).
#
# Servers are pinned to the hosts in var.nats_hosts (each with the host volume), listen on the
# host network with static ports, and route to each other by those addresses. Rolling updates go
# one server at a time and wait for /healthz, which reports unhealthy until the restarted
# server's JetStream assets have caught up.
#
#   nomad job run -hcl2-strict=false -var-file=inferq.vars.hcl nats.nomad.hcl

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "nats_hosts" {
  type        = list(string)
  description = "The three hosts' addresses (attr.unique.network.ip-address) that run NATS."
  validation {
    condition     = length(var.nats_hosts) == 3
    error_message = "JetStream R3 needs exactly three NATS servers here."
  }
}

variable "nats_image" {
  type    = string
  default = "nats:2.11-alpine"
}

variable "nats_volume" {
  type        = string
  default     = "nats-data"
  description = "Host volume for JetStream file storage, configured on each NATS host."
}

variable "nats_max_file_store" {
  type        = string
  default     = "200GB"
  description = "JetStream file storage limit per server (keep below the volume's size)."
}

variable "service_provider" {
  type    = string
  default = "nomad"
}

locals {
  routes = join(", ", [for h in var.nats_hosts : "\"nats-route://${h}:6222\""])
}

job "inferq-nats" {
  datacenters = var.datacenters
  type        = "service"
  priority    = 80

  group "nats" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    constraint {
      attribute = "${attr.unique.network.ip-address}"
      operator  = "set_contains_any"
      value     = join(",", var.nats_hosts)
    }

    # One server at a time, never two down: a stream keeps its quorum through the update.
    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "30s"
      healthy_deadline  = "10m"
      progress_deadline = "20m"
      auto_revert       = false
    }

    # The data lives on this host: restart in place rather than give up.
    restart {
      attempts = 10
      interval = "30m"
      delay    = "15s"
      mode     = "delay"
    }

    volume "data" {
      type      = "host"
      source    = var.nats_volume
      read_only = false
    }

    network {
      port "client" {
        static = 4222
      }
      port "cluster" {
        static = 6222
      }
      port "monitor" {
        static = 8222
      }
    }

    service {
      name     = "inferq-nats"
      provider = var.service_provider
      port     = "client"
      tags     = ["inferq", "nats"]

      check {
        name     = "healthz"
        type     = "http"
        port     = "monitor"
        path     = "/healthz"
        interval = "10s"
        timeout  = "3s"
      }
    }

    task "nats" {
      driver = "docker"

      config {
        image        = var.nats_image
        network_mode = "host"
        command      = "nats-server"
        args         = ["-c", "/secrets/nats.conf"]
      }

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      # Holds the client password, hence secrets/. Only the password can change underneath a
      # running server (authorization reloads on SIGHUP); any other change is a job update,
      # rolled one server at a time.
      template {
        destination   = "secrets/nats.conf"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          server_name: "{{ env "node.unique.name" }}"
          listen: "0.0.0.0:4222"
          http: "0.0.0.0:8222"
          max_payload: 8MB
          lame_duck_duration: "30s"
          lame_duck_grace_period: "10s"

          authorization {
            user: "inferq"
            password: "{{ with nomadVar "inferq/secrets" }}{{ .nats_password }}{{ end }}"
          }

          jetstream {
            store_dir: "/data/jetstream"
            max_file_store: ${var.nats_max_file_store}
            max_memory_store: 256MB
            sync_interval: always
          }

          cluster {
            name: "inferq"
            listen: "0.0.0.0:6222"
            routes: [ ${local.routes} ]
          }
        EOT
      }

      # SIGUSR2 is NATS's lame-duck mode: stop accepting, move clients away, then exit.
      kill_signal  = "SIGUSR2"
      kill_timeout = "60s"

      resources {
        cpu    = 2000
        memory = 4096
      }
    }
  }
}
