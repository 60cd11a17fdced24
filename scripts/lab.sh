#!/usr/bin/env bash
# The README's first command: set everything up and open JupyterLab on your own copies of the chapters
# (work/, git-ignored, filled from notebooks/ on first launch; your changes there are never overwritten).
# JupyterLab listens on 127.0.0.1 only, with a token (printed below). Extra arguments go to jupyter lab.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
.venv/bin/python -m lab chapters sync   # copies missing chapters to work/; writes the lab's JupyterLab settings
TOKEN="${LAB_TOKEN:-$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(16))')}"
ROOTFLAG=""; [ "$(id -u)" = 0 ] && ROOTFLAG="--allow-root"
echo "JupyterLab: http://127.0.0.1:${LAB_PORT:-8888}/lab/tree/00_start_here.ipynb?token=$TOKEN"
exec .venv/bin/jupyter lab --ip=127.0.0.1 --port="${LAB_PORT:-8888}" --IdentityProvider.token="$TOKEN" \
  --ServerApp.root_dir="$ROOT/work" $ROOTFLAG "$@"
