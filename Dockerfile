# syntax=docker/dockerfile:1
# extauthz: one static binary on distroless, running as 65532:65532.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse --short HEAD) -t ghcr.io/extauthz/extauthz:dev .
#   (or `make image`)

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
# Dependencies first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/extauthz ./cmd/extauthz
# The default --data-dir, owned by the runtime user, for `docker run` without a volume.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/extauthz /extauthz
COPY --from=build --chown=65532:65532 /out/data /var/lib/extauthz
USER 65532:65532
# 8181 admin API + replication feed, 9191 ext_authz gRPC + gRPC health, 9192 forwardAuth + /healthz /readyz /metrics
EXPOSE 8181 9191 9192
ENTRYPOINT ["/extauthz"]
