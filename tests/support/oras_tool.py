"""The tests' independent OCI client: PyPI's `oras` (ORAS Python SDK).

    python oras_tool.py push-wasm  REGISTRY REF MODULE
    python oras_tool.py push-sig   REGISTRY REF PAYLOAD SIGNATURE_B64
    python oras_tool.py pull-wasm  REGISTRY REF OUTDIR

REGISTRY is host:port; the CA file, user and password come from the
environment (WCP_TEST_CA, WCP_TEST_USER, WCP_TEST_PASSWORD) so they never
appear in an argument list. push-wasm publishes MODULE in the Wasm OCI
artifact layout; push-sig publishes a cosign signature manifest (one
simple-signing layer annotated with its signature) under REF, the
`sha256-<digest>.sig` tag. Each prints the manifest digest it pushed.
"""

import hashlib
import json
import os
import sys
import tempfile

import oras.client

WASM_CONFIG = "application/vnd.wasm.config.v0+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


def client(registry):
    c = oras.client.OrasClient(
        hostname=registry, tls_verify=os.environ["WCP_TEST_CA"], auth_backend="basic"
    )
    c.auth.set_basic_auth(os.environ["WCP_TEST_USER"], os.environ["WCP_TEST_PASSWORD"])
    return c


def pushed_digest(response):
    digest = response.headers.get("Docker-Content-Digest")
    print(digest)


def push_wasm(registry, ref, module):
    with open(module, "rb") as f:
        layer = "sha256:" + hashlib.sha256(f.read()).hexdigest()
    work = tempfile.mkdtemp()
    config = os.path.join(work, "config.json")
    with open(config, "w") as f:
        json.dump({"architecture": "wasm", "os": "wasip2", "layerDigests": [layer]}, f)
    response = client(registry).push(
        target=f"{registry}/{ref}",
        files=[f"{module}:application/wasm"],
        manifest_config=f"{config}:{WASM_CONFIG}",
        disable_path_validation=True,
        quiet=True,
    )
    pushed_digest(response)


def push_sig(registry, ref, payload, signature):
    work = tempfile.mkdtemp()
    annotations = os.path.join(work, "annotations.json")
    with open(annotations, "w") as f:
        json.dump({payload: {"dev.cosignproject.cosign/signature": signature}}, f)
    response = client(registry).push(
        target=f"{registry}/{ref}",
        files=[f"{payload}:{SIMPLE_SIGNING}"],
        annotation_file=annotations,
        disable_path_validation=True,
        quiet=True,
    )
    pushed_digest(response)


def pull_wasm(registry, ref, outdir):
    files = client(registry).pull(target=f"{registry}/{ref}", outdir=outdir)
    for f in files:
        print(f)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"push-wasm": push_wasm, "push-sig": push_sig, "pull-wasm": pull_wasm}[command](*args)
