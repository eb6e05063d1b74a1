# Multi-stage build of the kcqrs binaries (processor, projector, kcqrs).
# Used by docker-compose.yml; the image runs the processor unless told
# otherwise (entrypoint /usr/local/bin/projector for the projector).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/ ./cmd/...

FROM debian:bookworm-slim
# CA certificates for TLS to Kafka with the system pool (--tls without --tls-ca).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/ /usr/local/bin/
RUN useradd --system --uid 10001 --home-dir /state kcqrs && mkdir -p /state && chown kcqrs /state
USER kcqrs
WORKDIR /state
# In a container the endpoints must listen beyond loopback to be scraped.
ENV KCQRS_HTTP_ADDR=:8080 \
    KCQRS_STATE_DIR=/state \
    KCQRS_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/processor"]
