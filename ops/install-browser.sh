#!/usr/bin/env bash
# The browser the end-to-end tests drive: Debian's chromium package (never `playwright install`).
# Installs it when /usr/bin/chromium is missing; needs root or sudo on a fresh machine.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "install-browser: installing Debian's chromium for the browser tests" >&2
if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo -n); fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >&2
"${SUDO[@]}" apt-get install -y -qq chromium >&2
