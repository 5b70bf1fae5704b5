# Shared set-up for the project's scripts (sourced, not run).
# Installs what a fresh machine lacks; paths.sh picks the cargo target
# directory.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "==> installing the wasm32-wasip2 Rust target" >&2
    rustup target add wasm32-wasip2 >&2
fi

# The metrics tests parse the host's textfile with the Prometheus client's
# own parser.
if ! python3 -c 'import prometheus_client' 2>/dev/null; then
    echo "==> installing prometheus_client (PyPI)" >&2
    python3 -m pip install --quiet --user 'prometheus_client==0.26.0' >&2 \
        || python3 -m pip install --quiet --break-system-packages 'prometheus_client==0.26.0' >&2
fi

# The deploy tests validate every manifest in deploy/ against the Kubernetes
# schemas kubernetes-validate ships (offline).
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
    echo "==> installing kubernetes-validate (PyPI)" >&2
    python3 -m pip install --quiet --user 'kubernetes-validate==1.34.1' >&2 \
        || python3 -m pip install --quiet --break-system-packages 'kubernetes-validate==1.34.1' >&2
fi

# componentize-py, which builds the Python provider (plugins-py/) that the
# tests run: the pinned version, pip-installed into a venv outside the clone.
# Only scripts that need it call this (scripts/test); it exports WCP_PYTHON,
# the interpreter tests/python.rs builds the component with.
COMPONENTIZE_PY_VERSION="0.25.1"
export WCP_PY_VENV="${WCP_PY_VENV:-$HOME/.cache/wasm-credential-provider/py-venv}"
ensure_componentize_py() {
    local have
    have="$("$WCP_PY_VENV/bin/componentize-py" --version 2>/dev/null || true)"
    if [ "$have" != "componentize-py $COMPONENTIZE_PY_VERSION" ]; then
        echo "==> installing componentize-py $COMPONENTIZE_PY_VERSION into $WCP_PY_VENV" >&2
        if ! command -v python3 >/dev/null; then
            echo "error: python3 (3.10 or later, with venv) is needed to build plugins-py/" >&2
            return 1
        fi
        python3 -m venv "$WCP_PY_VENV" >&2
        "$WCP_PY_VENV/bin/python" -m pip install --disable-pip-version-check --quiet \
            "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
    fi
    export WCP_PYTHON="$WCP_PY_VENV/bin/python"
}

# The OCI tests (tests/oci.rs) run the real distribution registry (Debian's
# docker-registry) and push and pull with PyPI's oras as a client
# independent of ours. Only scripts that need them call this (scripts/test);
# it exports WCP_ORAS_PYTHON, the interpreter that has oras.
ORAS_VERSION="0.2.43"
export WCP_ORAS_VENV="${WCP_ORAS_VENV:-$HOME/.cache/wasm-credential-provider/oras-venv}"
ensure_oci_tools() {
    if [ ! -x /usr/bin/docker-registry ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "==> installing docker-registry (Debian)" >&2
            # A fresh machine has no package lists yet: update once, then retry.
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-registry >&2 \
                || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-registry >&2; }
        else
            echo "note: /usr/bin/docker-registry is missing and cannot be installed here (needs root and apt-get); tests/oci.rs skips its registry tests" >&2
        fi
    fi
    local have
    have="$("$WCP_ORAS_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("oras"))' 2>/dev/null || true)"
    if [ "$have" != "$ORAS_VERSION" ]; then
        echo "==> installing oras $ORAS_VERSION into $WCP_ORAS_VENV" >&2
        python3 -m venv "$WCP_ORAS_VENV" >&2
        "$WCP_ORAS_VENV/bin/python" -m pip install --disable-pip-version-check --quiet \
            "oras==$ORAS_VERSION" >&2
    fi
    export WCP_ORAS_PYTHON="$WCP_ORAS_VENV/bin/python"
}
