# NATS JetStream for inferq: a three-server cluster that holds R3 streams (JOBS, BATCHES, DLQ).
#
# What matters for inferq's guarantees:
# - three servers on three hosts, so an R3 stream keeps a quorum through one lost host;
# - `sync_interval: always`: a PubAck means the message was fsynced on a quorum, so an accepted
#   job (the gateway answers 202 only after the PubAck) survives a power loss, not only a crash;
# - file storage on a host volume on each server's host (local NVMe: every write is fsynced);
# - max_payload matches the streams' largest message (BATCHES: 8 MiB);
# - one NATS user per inferq role, each allowed only the subjects it uses (inferq/nats_users.py
#   lists them and says why; tests/inferq/test_nats_permissions.py checks this file grants the
#   same): a gateway publishes jobs, a scheduler consumes them and publishes batches, a runner
#   consumes batches and publishes dead letters. None of them may create, update, purge or
#   delete the streams: the admin user does (`inferq bus provision`, inferq-migrate.nomad.hcl)
#   with INFERQ_STREAM_REPLICAS=3;
# - route authentication: servers join the cluster only with the route user's password;
# - TLS (var.nats_tls): clients and routes encrypted and verified, with certificates from the
#   Nomad variable inferq/tls (see inferq-secrets.example.nv.hcl).
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

variable "nats_tls" {
  type        = bool
  default     = false
  description = <<-EOT
    TLS for clients (port 4222) and routes (6222), from the Nomad variable inferq/tls: items
    ca_pem, nats_cert_pem, nats_key_pem. The certificate must name every NATS host's address
    (IP subjectAltNames) and allow both serverAuth and clientAuth: routes present it to each
    other. The monitoring port (8222, /healthz) stays plain HTTP: keep it off the network edge.
  EOT
}

variable "service_provider" {
  type    = string
  default = "nomad"
}

locals {
  # The route password is left for the template to render from the Nomad variable.
  routes = join(", ", [for h in var.nats_hosts : "\"nats-route://route:{{ .nats_route_password }}@${h}:6222\""])
  tls_files = {
    "ca.pem"       = "ca_pem"
    "nats.pem"     = "nats_cert_pem"
    "nats-key.pem" = "nats_key_pem"
  }
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

      # Holds the passwords, hence secrets/. Only the users and their passwords can change
      # underneath a running server (authorization reloads on SIGHUP); any other change is a
      # job update, rolled one server at a time.
      template {
        destination   = "secrets/nats.conf"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          {{ with nomadVar "inferq/secrets" -}}
          server_name: "{{ env "node.unique.name" }}"
          listen: "0.0.0.0:4222"
          http: "0.0.0.0:8222"
          max_payload: 8MB
          lame_duck_duration: "30s"
          lame_duck_grace_period: "10s"
          %{ if var.nats_tls }
          tls {
            cert_file: "/secrets/nats.pem"
            key_file: "/secrets/nats-key.pem"
            ca_file: "/secrets/ca.pem"
            timeout: 2
          }
          %{ endif }

          # One user per role: the same lists as inferq/nats_users.py (tested). Replies come
          # to each role's own inbox prefix, _INBOX.<role>.
          authorization {
            users: [
              {
                user: "gateway"
                password: "{{ .nats_gateway_password }}"
                permissions: {
                  publish: {allow: [
                    "inferq.jobs.>"
                    "inferq.signal.work_arrived.>"
                    "$JS.API.STREAM.INFO.JOBS"
                    "$JS.API.STREAM.INFO.BATCHES"
                    "$JS.API.STREAM.INFO.DLQ"
                    "$JS.API.STREAM.MSG.GET.JOBS"
                    "$JS.API.STREAM.CREATE.OBJ_inferq-files"
                    "$JS.API.STREAM.UPDATE.OBJ_inferq-files"
                    "$JS.API.STREAM.INFO.OBJ_inferq-files"
                    "$JS.API.STREAM.PURGE.OBJ_inferq-files"
                    "$JS.API.DIRECT.GET.OBJ_inferq-files"
                    "$JS.API.DIRECT.GET.OBJ_inferq-files.>"
                    "$O.inferq-files.>"
                    "$JS.API.STREAM.CREATE.OBJ_inferq-files-openai"
                    "$JS.API.STREAM.UPDATE.OBJ_inferq-files-openai"
                    "$JS.API.STREAM.INFO.OBJ_inferq-files-openai"
                    "$JS.API.STREAM.PURGE.OBJ_inferq-files-openai"
                    "$JS.API.DIRECT.GET.OBJ_inferq-files-openai"
                    "$JS.API.DIRECT.GET.OBJ_inferq-files-openai.>"
                    "$O.inferq-files-openai.>"
                  ]}
                  subscribe: {allow: [
                    "_INBOX.gateway.>"
                  ]}
                }
              }
              {
                user: "scheduler"
                password: "{{ .nats_scheduler_password }}"
                permissions: {
                  publish: {allow: [
                    "inferq.batches.>"
                    "$JS.API.STREAM.INFO.JOBS"
                    "$JS.API.STREAM.INFO.BATCHES"
                    "$JS.API.STREAM.INFO.DLQ"
                    "$JS.API.STREAM.MSG.GET.JOBS"
                    "$JS.API.CONSUMER.CREATE.JOBS.>"
                    "$JS.API.CONSUMER.DURABLE.CREATE.JOBS.>"
                    "$JS.API.CONSUMER.INFO.JOBS.>"
                    "$JS.API.CONSUMER.MSG.NEXT.JOBS.>"
                    "$JS.ACK.JOBS.>"
                    "$JS.API.CONSUMER.INFO.BATCHES.>"
                  ]}
                  subscribe: {allow: [
                    "_INBOX.scheduler.>"
                    "inferq.signal.batch_wanted.>"
                    "inferq.signal.work_arrived.>"
                  ]}
                }
              }
              {
                user: "runner"
                password: "{{ .nats_runner_password }}"
                permissions: {
                  publish: {allow: [
                    "inferq.dlq.>"
                    "inferq.signal.batch_wanted.>"
                    "$JS.API.STREAM.INFO.JOBS"
                    "$JS.API.STREAM.INFO.BATCHES"
                    "$JS.API.STREAM.INFO.DLQ"
                    "$JS.API.CONSUMER.CREATE.BATCHES.>"
                    "$JS.API.CONSUMER.DURABLE.CREATE.BATCHES.>"
                    "$JS.API.CONSUMER.INFO.BATCHES.>"
                    "$JS.API.CONSUMER.MSG.NEXT.BATCHES.>"
                    "$JS.ACK.BATCHES.>"
                  ]}
                  subscribe: {allow: [
                    "_INBOX.runner.>"
                  ]}
                }
              }
              {
                user: "admin"
                password: "{{ .nats_admin_password }}"
              }

            ]
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
            # A server joins the cluster only with the route password.
            authorization {
              user: "route"
              password: "{{ .nats_route_password }}"
              timeout: 2
            }
            %{ if var.nats_tls }
            # Routes verify each other's certificates (one CA for the cluster).
            tls {
              cert_file: "/secrets/nats.pem"
              key_file: "/secrets/nats-key.pem"
              ca_file: "/secrets/ca.pem"
              verify: true
              timeout: 2
            }
            %{ endif }
          }
          {{- end }}
        EOT
      }

      # TLS files (var.nats_tls): a changed certificate is reloaded without a restart.
      dynamic "template" {
        for_each = var.nats_tls ? local.tls_files : {}
        content {
          destination   = "secrets/${template.key}"
          change_mode   = "signal"
          change_signal = "SIGHUP"
          perms         = "0600"
          data          = "{{ with nomadVar \"inferq/tls\" }}{{ .${template.value} }}{{ end }}"
        }
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
