# syntax=docker/dockerfile:1
#
# onsale server image: a static binary on distroless, running as a non-root user.
#
#   docker build -t onsale/server .
#   docker run -p 8080:8080 onsale/server          # embedded mode, single replica
#
# See deploy/compose.yaml for the server with Redis, PostgreSQL and NATS.

FROM golang:1.26-bookworm AS build
WORKDIR /src

# Modules first, in their own layer: it is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/server ./cmd/server \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
# distroless/static carries CA certificates and time zone data; nonroot is uid/gid 65532.
COPY --from=build /out/server /server
COPY --from=build --chown=65532:65532 /out/data /data
ENV ONSALE_DATA_DIR=/data
VOLUME ["/data"]
USER 65532:65532
EXPOSE 8080
# No HEALTHCHECK: the image has no shell or HTTP client. Orchestrators probe GET /livez and
# GET /readyz on port 8080 themselves.
ENTRYPOINT ["/server"]
