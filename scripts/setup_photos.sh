#!/usr/bin/env bash
# Debian's tuxpaint-stamps-default: the real labelled photos of `labelloop datasets export
# photos` (GPL-2; 180 photo cut-outs in 6 classes). Idempotent: does nothing when the stamps
# are there. Needs root (apt-get); without it, it says so and exits non-zero.
set -euo pipefail
if [ -d /usr/share/tuxpaint/stamps/animals/birds ]; then
    echo "setup_photos: tuxpaint stamps already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ]; then
    echo "setup_photos: installing the photos needs root and apt-get" \
         "(apt-get install --no-install-recommends tuxpaint-stamps-default)" >&2
    exit 1
fi
echo "setup_photos: installing Debian's tuxpaint-stamps-default (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends tuxpaint-stamps-default >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends tuxpaint-stamps-default >/dev/null
}
echo "setup_photos: installed $(find /usr/share/tuxpaint/stamps -name '*.png' | wc -l) stamps"
