#!/usr/bin/env bash
# Debian's chromium, for the test that opens `labelloop report`'s page in a real headless
# browser. Idempotent: does nothing when a chromium is already on PATH. Needs root (apt-get);
# without it, or without the package, it says so and exits non-zero, and the test skips with
# that message.
set -euo pipefail
for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
        echo "setup_browser: $name already installed ($(command -v "$name"))"
        exit 0
    fi
done
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_browser: no apt-get on this machine; install chromium by hand" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup_browser: installing chromium needs root (apt-get install -y chromium)" >&2
    exit 1
fi
echo "setup_browser: installing Debian's chromium (apt-get; a minute or two)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "setup_browser: $(chromium --version 2>/dev/null || echo 'chromium installed')"
