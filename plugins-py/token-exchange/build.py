#!/usr/bin/env python3
"""Builds the token-exchange provider into a component and embeds its
capability declaration.

    python3 build.py OUT.wasm

1. `componentize-py` (the one installed beside this interpreter, else on
   PATH; scripts/setup.sh pins it) turns app.py into a component of world
   `wcp:credential-provider/plugin` from `wit/since_v0.1.0`.
2. capabilities.json is appended to it as a top-level custom section named
   `wcp-capabilities`, the section the Rust SDK's `declare_capabilities!`
   embeds. The host searches every nesting level for it, so a section at the
   component's top level counts the same as one inside a core module.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WIT = HERE.parent.parent / "wit" / "since_v0.1.0"
WORLD = "plugin"
SECTION = "wcp-capabilities"
COMPONENT_PREAMBLE = b"\0asm\x0d\0\x01\0"


def leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def custom_section(name: str, data: bytes) -> bytes:
    encoded = name.encode()
    body = leb128(len(encoded)) + encoded + data
    return b"\0" + leb128(len(body)) + body


def componentize_py() -> str:
    beside = Path(sys.executable).parent / "componentize-py"
    if beside.exists():
        return str(beside)
    found = shutil.which("componentize-py")
    if found is None:
        sys.exit("build.py: componentize-py is not installed; run scripts/setup.sh (it installs the pinned version)")
    return found


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: build.py OUT.wasm")
    out = Path(sys.argv[1]).resolve()
    declaration = (HERE / "capabilities.json").read_bytes()
    json.loads(declaration)  # fail here, not on the node, on broken JSON
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial.wasm")
    subprocess.run(
        [componentize_py(), "-d", str(WIT), "-w", WORLD, "componentize", "-p", str(HERE), "app", "-o", str(partial)],
        check=True,
        cwd=HERE,
        stdout=sys.stderr,
        # No __pycache__ beside the sources (it would be bundled next time).
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    component = partial.read_bytes()
    if not component.startswith(COMPONENT_PREAMBLE):
        sys.exit(f"build.py: {partial} is not a component")
    partial.write_bytes(component + custom_section(SECTION, declaration))
    os.replace(partial, out)
    print(out)


if __name__ == "__main__":
    main()
