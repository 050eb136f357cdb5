#!/usr/bin/env bash
# Creates deploy/secrets/ for the compose stack: a private CA, faultline's server
# certificate (for the names `faultline` and `localhost`), and the ingest and API tokens.
# Run once before `docker compose up`; re-run with --force to rotate everything
# (faultline picks up the new files without a restart).
#
# Needs openssl. Production: use your own CA or cert-manager, and your secret store.
set -euo pipefail
cd "$(dirname "$0")"
out=secrets
if [ -e "$out/tls.crt" ] && [ "${1:-}" != "--force" ]; then
    echo "deploy/secrets exists; use --force to replace it" >&2
    exit 0
fi
mkdir -p "$out"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=faultline example CA" -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=faultline" -keyout "$out/tls.key.new" -out "$out/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:faultline,DNS:faultline-api,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$out/ext.cnf"
openssl x509 -req -in "$out/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -days 397 -extfile "$out/ext.cnf" -out "$out/tls.crt.new" 2>/dev/null
mv "$out/tls.key.new" "$out/tls.key"
mv "$out/tls.crt.new" "$out/tls.crt"
openssl rand -hex 32 > "$out/ingest-token"
openssl rand -hex 32 > "$out/api-token"
rm -f "$out/tls.csr" "$out/ext.cnf" "$out/ca.srl"
# The containers run as non-root users: the files must be readable by them.
chmod 644 "$out"/ca.crt "$out"/tls.crt "$out"/tls.key "$out"/ingest-token "$out"/api-token
echo "Wrote $out/: ca.crt tls.crt tls.key ingest-token api-token (ca.key stays here)."
echo "API token for the web page and curl: $(cat "$out/api-token")"
