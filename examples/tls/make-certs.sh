#!/usr/bin/env bash
# Makes a CA and one certificate per node for a Wire cluster over TLS, with openssl:
#
#   examples/tls/make-certs.sh DIR [HOST...]
#
# DIR/ca.pem and DIR/ca-key.pem: the cluster's CA (keep ca-key.pem off the nodes).
# DIR/node.pem and DIR/node-key.pem: a certificate for every HOST given (IP addresses or
# DNS names; 127.0.0.1 and localhost by default), good for server and client auth, so one
# file pair can serve every node of a test cluster. Run it again with the same DIR to
# rotate the node certificate under the same CA: nodes reload it without a restart.
#
# Then: wire node --tls-cert DIR/node.pem --tls-key DIR/node-key.pem --tls-ca DIR/ca.pem ...
#       wire kv get some-key --ca DIR/ca.pem --addr 127.0.0.1:8081
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR [HOST...]}
shift
hosts=("$@")
[ ${#hosts[@]} -gt 0 ] || hosts=(127.0.0.1 localhost)
mkdir -p "$dir"
san=""
for h in "${hosts[@]}"; do
  if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then san+="IP:$h,"; else san+="DNS:$h,"; fi
done
san=${san%,}
if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" -days 3650 -subj "/CN=Wire cluster CA" 2>/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$tmp/key.pem" -out "$tmp/node.csr" -subj "/CN=wire node" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' "$san" > "$tmp/ext.cnf"
openssl x509 -req -in "$tmp/node.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
  -CAcreateserial -out "$tmp/node.pem" -days 365 -extfile "$tmp/ext.cnf" 2>/dev/null
# The key first, then the certificate: a node that reloads between the two moves sees a
# pair that does not match, keeps its old one, and loads the new pair at the next change.
mv "$tmp/key.pem" "$dir/node-key.pem"
mv "$tmp/node.pem" "$dir/node.pem"
echo "$dir/ca.pem $dir/node.pem $dir/node-key.pem"
