#!/bin/bash
# Smoke-test a built gridshift image: runs as UID 65532 on a read-only root filesystem with
# every capability dropped, serves the SAMPLE DATA run (status, dashboard, metrics).
# Usage: deploy/image-smoke.sh [IMAGE]   (needs a Docker daemon and host networking)
set -euo pipefail
IMG=${1:-gridshift:local}
echo "== size"; docker images $IMG --format '{{.Repository}}:{{.Tag}} {{.Size}}'
echo "== user"; docker run --rm --read-only --entrypoint id $IMG
echo "== version"; docker run --rm --read-only $IMG --version 2>&1 | tail -1
echo "== config check"; docker run --rm --read-only $IMG config check 2>&1 | tail -2
echo "== run (sample) read-only, non-root, all caps dropped"
CID=$(docker run -d --read-only --cap-drop ALL --security-opt no-new-privileges --network host \
  -e GRIDSHIFT_SERVER__LISTEN=127.0.0.1:18080 -e GRIDSHIFT_METRICS_API__LISTEN=127.0.0.1:16443 \
  -e GRIDSHIFT_KEDA__LISTEN=127.0.0.1:16000 $IMG run)
for i in $(seq 1 60); do curl -sf http://127.0.0.1:18080/status >/dev/null && break; sleep 1; done
sleep 5
echo "status: $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/status)"
echo "dashboard: $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/dashboard)"
echo "gridshift_ series: $(curl -s http://127.0.0.1:18080/metrics | grep -c '^gridshift_')"
curl -s http://127.0.0.1:18080/metrics | grep '^gridshift_desired_replicas' | head -3
echo "external metrics discovery: $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:16443/apis/external.metrics.k8s.io/v1beta1)"
docker exec "$CID" sh -c 'touch /usr/local/x' 2>&1 | head -1 || true
docker logs $CID 2>&1 | head -5
docker rm -f $CID >/dev/null
