#!/usr/bin/env bash
# Creates a self-signed demo certificate for web-config.yml (tls/ next to it, or $1).
# Idempotent: keeps an existing pair.
set -euo pipefail
dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/tls"}
mkdir -p "$dir"
if [ -s "$dir/exporter.crt" ] && [ -s "$dir/exporter.key" ]; then
  echo "gen-certs: $dir/exporter.crt exists"
  exit 0
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
  -keyout "$dir/exporter.key" -out "$dir/exporter.crt" 2>/dev/null
chmod 600 "$dir/exporter.key"
echo "gen-certs: wrote $dir/exporter.crt and exporter.key"
