#!/usr/bin/env bash
# Wire vs etcd: concurrent PUTs on two 3-node clusters on 127.0.0.1 (see
# wire-core/benches/kv_put.rs). Installs Debian's etcd-server when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v etcd >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo bench -p wire-core --bench kv_put
