"""A two-node cluster safe to put on a network: TLS on both listeners (node-to-node is
mutual TLS against the cluster's CA), and users with permissions on the HTTP API.

    pip install .            # from the repository root (builds the native module)
    python examples/python/secure_cluster.py

It makes a CA and a node certificate with ``examples/tls/make-certs.sh`` (openssl), a
reader with a password and an operator with a bearer token, starts both nodes in this
process, and talks to them over https as each user.
"""

import pathlib
import subprocess
import tempfile

import wire
import wire.auth

HERE = pathlib.Path(__file__).resolve().parent
work = pathlib.Path(tempfile.mkdtemp())
certs = work / "certs"
subprocess.run(["bash", str(HERE.parent / "tls" / "make-certs.sh"), str(certs)], check=True,
               stdout=subprocess.DEVNULL)
tls = {"tls_cert": str(certs / "node.pem"), "tls_key": str(certs / "node-key.pem"),
       "tls_ca": str(certs / "ca.pem")}

token = wire.auth.new_token()
users = [
    {"name": "reader", "password_hash": wire.auth.hash_password("reader-pw"),
     "permissions": ["read", "status"]},
    {"name": "operator", "token_sha256": wire.auth.token_sha256(token), "permissions": ["all"]},
]
free = {"http_addr": "127.0.0.1:0", "raft_addr": "127.0.0.1:0"}

first = wire.Node(node_id=1, data_dir=work / "n1", bootstrap=True, users=users, **free, **tls)
# The second node joins over TLS, showing its certificate: no password, no shared secret.
second = wire.Node(node_id=2, data_dir=work / "n2", join=[first.http_addr], users=users,
                   **free, **tls)
second.wait_ready()
print("nodes:", first.url, second.url)

operator = wire.Client(second.url, token=token, ca=tls["tls_ca"])
operator.kv.put("config/greeting", b"hello over TLS")

reader = wire.Client(second.url, user="reader", password="reader-pw", ca=tls["tls_ca"])
print("reader reads:", reader.kv.get("config/greeting"))
print("members:", [m["id"] for m in reader.members()])
try:
    reader.kv.put("config/greeting", b"changed")
except wire.ForbiddenError as e:
    print("reader may not write:", e)

try:
    wire.Client(second.url, ca=tls["tls_ca"], retry_for=0).kv.get("config/greeting")
except wire.UnauthenticatedError as e:
    print("no credentials:", e)

second.stop()
first.stop()
