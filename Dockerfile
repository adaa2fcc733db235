# Prometheus-style image: packages a binary built beforehand by `promu build`,
# `promu crossbuild` or scripts/build.sh into .build/<os>-<arch>/.
#
#   ./scripts/build.sh            # or: make build / promu build
#   docker build -t rabbitmq-queue-exporter .
#
# For other platforms build .build/linux-arm64/ first and pass
# --build-arg ARCH=arm64. To build from source without a local Go toolchain
# use Dockerfile.source instead.
ARG ARCH="amd64"
ARG OS="linux"
FROM quay.io/prometheus/busybox-${OS}-${ARCH}:latest
LABEL maintainer="The rabbitmq_queue_exporter authors" \
      description="Prometheus exporter for RabbitMQ per-queue message counts" \
      org.opencontainers.image.title="rabbitmq_queue_exporter" \
      org.opencontainers.image.source="https://github.com/rabbitmq-queue-exporter/rabbitmq_queue_exporter" \
      org.opencontainers.image.licenses="Apache-2.0"

ARG ARCH="amd64"
ARG OS="linux"
COPY .build/${OS}-${ARCH}/rabbitmq_queue_exporter /bin/rabbitmq_queue_exporter

EXPOSE 9419
USER nobody
ENTRYPOINT ["/bin/rabbitmq_queue_exporter"]
