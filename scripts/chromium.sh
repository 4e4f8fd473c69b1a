#!/usr/bin/env bash
# Debian's Chromium for the leaderboard's browser test (tests/test_pictures.py), when missing.
# Root and apt only (CI); elsewhere that test is skipped and says how to install it.
set -euo pipefail
if command -v chromium >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
