#!/usr/bin/env bash
# Create the separate virtual environment that runs RecBole 1.2.1 for
# benchmarks/eval_vs_recbole.py.  recfunnel itself is NOT installed there.
#
# Usage: bash benchmarks/setup_recbole_venv.sh [VENV_PATH]
#        (default: .venv-recbole in the repository root)
#
# Pins (RecBole 1.2.1 is old; newer releases of its dependencies break it):
#   torch==2.13.0     the CPU wheel on local disk; any other version pulls a multi-GB CUDA build
#   recbole==1.2.1
#   numpy==1.26.4     RecBole uses np.float_, removed in numpy 2
#   pandas==2.1.4     last pandas that is happy with numpy 1.26 + RecBole's dataset code
#   scipy==1.11.4
#   setuptools<81     RecBole imports ray, whose import needs pkg_resources
# At run time RecBole also needs TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (the driver sets it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-recbole}"
PYTHON="${PYTHON:-python3.11}"

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    PYTHON=python3
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi

# A constraints file keeps every transitive requirement on the pinned versions,
# so pip can never replace torch (or numpy) while resolving RecBole's dependencies.
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
cat >"$CONSTRAINTS" <<'EOF'
torch==2.13.0
recbole==1.2.1
numpy==1.26.4
pandas==2.1.4
scipy==1.11.4
setuptools<81
EOF

pip_install() {
    # Drop pip's noise about local index folders that lack a package; keep everything else.
    "$VENV/bin/python" -m pip install --quiet "$@" 2>&1 |
        { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

pip_install --upgrade pip
pip_install -c "$CONSTRAINTS" \
    "torch==2.13.0" "numpy==1.26.4" "pandas==2.1.4" "scipy==1.11.4" "setuptools<81"
pip_install -c "$CONSTRAINTS" "recbole==1.2.1"

echo "checking the installation"
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 "$VENV/bin/python" - <<'EOF'
import numpy
import torch

import recbole

assert recbole.__version__ == "1.2.1", recbole.__version__
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert numpy.__version__ == "1.26.4", numpy.__version__
print(f"ok: recbole {recbole.__version__}, torch {torch.__version__}, numpy {numpy.__version__}")
EOF
echo "RecBole venv ready at $VENV"
