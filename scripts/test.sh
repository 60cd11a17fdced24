#!/usr/bin/env bash
# The README's second command (and CI's): set everything up, then run the whole test suite:
# unit tests, real-cluster integration tests, every bench and every chapter in quick mode, the browser test.
# `-rfEs` lists every failure, error and skip with its reason in the summary.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# the browser test drives Debian's Chromium through Playwright (never `playwright install`);
# the wire test reads per-socket TCP counters with `ss` (iproute2). Installed here when root.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v ss >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
      || echo "warning: could not install ${missing[*]}" >&2
  fi
  [ -x /usr/bin/chromium ] || missing_now="chromium "
  command -v ss >/dev/null || missing_now="${missing_now:-}ss(iproute2)"
  if [ -n "${missing_now:-}" ] && [ "${CI:-}" = true ]; then  # CI never hides a test
    echo "error: CI=true and ${missing_now} missing (the browser / wire tests need them); install as root" >&2
    exit 1
  elif [ -n "${missing_now:-}" ]; then
    echo "warning: ${missing_now} missing: the browser / wire tests will be skipped (listed in the summary)" >&2
  fi
fi
export LAB_QUICK=1
export IPYTHONDIR="$(mktemp -d)/ipython"   # the suite's clusters are its own: its leftover check looks here
# two test processes (pytest-xdist), each with its own clusters (tests/conftest.py); a file (a test
# module or a chapter) stays in one process, in order: a chapter's cells and a module's cluster need it.
# LAB_TEST_PROCS=0 runs everything in this one process.
exec .venv/bin/python -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider \
  -n "${LAB_TEST_PROCS:-2}" --dist loadfile -o junit_family=xunit2 -rfEs --durations=15 "$@"
