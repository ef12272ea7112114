#!/usr/bin/env bash
# The README's second text for budget runs: the Rust sources of burn-nn 0.22.1 (the published
# crate, which every build of this workspace downloads into Cargo's registry), its files in path
# order, each after a `// path` line: 859,863 characters, 109 distinct.
#
#   scripts/code-text.sh > runs/texts/burn-nn.txt
set -euo pipefail
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/burn-nn-0.22.1/src | head -1)
python3 - "$src" <<'PY'
import glob, os, sys
root = sys.argv[1]
for path in sorted(glob.glob(root + "/**/*.rs", recursive=True)):
    sys.stdout.write(f"// {os.path.relpath(path, os.path.dirname(root))}\n")
    sys.stdout.write(open(path, encoding="utf-8").read())
PY
