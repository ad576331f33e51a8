// Package deploy holds what it takes to run segwarehouse outside `go run`:
// the Helm chart (helm/segwarehouse), a Docker Compose stack with real
// Kafka, Postgres, an OpenTelemetry collector, Jaeger, Prometheus and
// Grafana (compose/), and the Grafana dashboard (grafana/). The image is
// built by the repository's Dockerfile.
//
// The package has no Go code of its own: its tests render the chart with
// the pinned Helm (helm lint and helm template) and decode every object
// strictly into the Kubernetes API types, check that the compose stack is
// wired together, that the dashboard and the alert rules query only the
// metrics the binary exports (internal/telemetry.Metrics), and that the
// Dockerfile builds a static, non-root, reproducible image.
//
//	go test ./deploy/
//
// It imports only internal/telemetry, for the list of metric names.
package deploy
