# inferq store migrate: create the result store's tables (Cassandra keyspace and tables).
#
# A batch job run once before the first deploy and again before any release whose notes say the
# schema changed. Migrations are idempotent (CREATE ... IF NOT EXISTS), so a rerun is harmless.
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
  }
}
