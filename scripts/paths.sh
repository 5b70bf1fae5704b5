# Where the project's scripts build (sourced, not run): the repository root,
# and a cargo target directory outside the clone so that repeated runs reuse
# the wasmtime build. setup.sh sources this; scripts/build-node sources only
# this, so that a container build installs no test tools.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wasm-credential-provider/target}"
