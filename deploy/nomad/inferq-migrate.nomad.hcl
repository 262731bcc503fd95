# inferq store migrate: create the result store's tables (Cassandra keyspace and tables), and
# inferq bus provision: create the NATS streams (JOBS, BATCHES, DLQ; R3) as the NATS admin user,
# since the roles' users may not (nats.nomad.hcl).
#
# A batch job run once before the first deploy and again before any release whose notes say the
# schema or the streams changed. Both are idempotent (CREATE ... IF NOT EXISTS; a stream already
# as configured is left alone), so a rerun is harmless.
# The keyspace's replication and the consistency level come from INFERQ_RESULTS_URL (Nomad
# variable inferq/secrets, item results_url): production uses replication dc:3 and LOCAL_QUORUM.
#
#   nomad job run -hcl2-strict=false -var-file=inferq.vars.hcl inferq-migrate.nomad.hcl
#   nomad job status inferq-migrate      # wait for "dead" with the task "complete"

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "inferq_image" {
  type = string
}

variable "nats_hosts" {
  type        = list(string)
  description = "Addresses of the three NATS servers (see nats.nomad.hcl)."
}

variable "nats_tls" {
  type    = bool
  default = false
}

job "inferq-migrate" {
  datacenters = var.datacenters
  type        = "batch"
  priority    = 70

  group "migrate" {
    count = 1

    restart {
      attempts = 3
      interval = "10m"
      delay    = "20s"
      mode     = "fail"
    }

    reschedule {
      attempts  = 2
      interval  = "1h"
      delay     = "1m"
      unlimited = false
    }

    task "migrate" {
      driver = "docker"

      config {
        image   = var.inferq_image
        command = "inferq"
        args    = ["store", "migrate"]
      }

      # Only the result store's URL (with its credentials): migration touches nothing else.
      template {
        destination = "secrets/inferq.env"
        env         = true
        data        = <<-EOT
          {{ with nomadVar "inferq/secrets" -}}
          INFERQ_RESULTS_URL={{ .results_url | toJSON }}
          {{- end }}
        EOT
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }

    # The streams, as the admin user: the only NATS user that may create or update them.
    task "streams" {
      driver = "docker"

      config {
        image   = var.inferq_image
        command = "inferq"
        args    = ["bus", "provision"]
      }

      env {
        INFERQ_STREAM_REPLICAS = "3"
      }

      template {
        destination = "secrets/inferq.env"
        env         = true
        data        = <<-EOT
          {{ with nomadVar "inferq/secrets" -}}
          INFERQ_NATS_URL=${join(",", [for h in var.nats_hosts : "nats://${h}:4222"])}
          INFERQ_NATS_USER=admin
          INFERQ_NATS_PASSWORD={{ .nats_admin_password }}
          %{ if var.nats_tls }INFERQ_NATS_TLS_CA=/secrets/ca.pem%{ endif }
          {{- end }}
        EOT
      }

      dynamic "template" {
        for_each = var.nats_tls ? ["ca.pem"] : []
        content {
          destination = "secrets/${template.value}"
          data        = "{{ with nomadVar \"inferq/tls\" }}{{ .ca_pem }}{{ end }}"
        }
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
