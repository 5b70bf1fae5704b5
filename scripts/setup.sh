# Shared set-up for the project's scripts (sourced, not run).
# Installs what a fresh machine lacks and picks a cargo target directory
# outside the clone so that repeated runs reuse the wasmtime build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wasm-credential-provider/target}"

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
