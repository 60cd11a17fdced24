#!/usr/bin/env bash
# The README's second command (and CI's): set everything up, then run the whole test suite:
# unit tests, real-cluster integration tests, every chapter under nbval in quick mode, the browser test.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# the browser test drives Debian's Chromium through Playwright (never `playwright install`)
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; the browser test will be skipped" >&2
  else
    echo "warning: /usr/bin/chromium is missing (install Debian's chromium); the browser test will be skipped" >&2
  fi
fi
export LAB_QUICK=1
export IPYTHONDIR="$(mktemp -d)/ipython"   # the suite's clusters are its own: its leftover check looks here
exec .venv/bin/python -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider \
  -o junit_family=xunit2 -rfEs --durations=15 "$@"
