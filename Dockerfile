# syntax=docker/dockerfile:1
#
# segwarehouse container image: a static binary on distroless, non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t segwarehouse .
#   (or: make docker)
#
# Reproducible: the binary depends only on the sources, the Go toolchain
# of the builder image and VERSION (-trimpath drops local paths,
# -buildvcs=false drops the VCS stamp, -buildid= drops the build id, and no
# build date is stamped anywhere, not even in the labels). No HEALTHCHECK:
# Kubernetes probes /healthz and /readyz on SEGWH_HTTP_ADDR (default :9090).

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
# Modules first, so that a source change does not re-download them.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -buildid= -X main.version=${VERSION}" \
      -o /out/segwarehouse ./cmd/segwarehouse

# distroless/static: CA certificates, /etc/passwd with nonroot (65532),
# tzdata, no shell. `kubectl exec POD -- /segwarehouse check` still works.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="segwarehouse" \
      org.opencontainers.image.description="Loads Segment events from Kafka into Postgres exactly once, laid out as Segment's Postgres destination" \
      org.opencontainers.image.source="https://github.com/segwarehouse/segwarehouse" \
      org.opencontainers.image.url="https://github.com/segwarehouse/segwarehouse" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build /out/segwarehouse /segwarehouse
USER 65532:65532
# /healthz, /readyz and /metrics (SEGWH_HTTP_ADDR).
EXPOSE 9090
ENTRYPOINT ["/segwarehouse"]
CMD ["run"]
