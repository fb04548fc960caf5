#!/usr/bin/env bash
# System packages the build needs: gloo's headers (Debian's libgloo-dev) for the
# c10d shim of data-parallel training; the torch wheel ships gloo's library
# inside libtorch but not its headers. Installs them when run as root with
# apt-get; otherwise says what to install.
set -euo pipefail
if [ -f /usr/include/gloo/config.h ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup-system: installing libgloo-dev (gloo headers for the c10d shim)" >&2
  apt-get install -y -q libgloo-dev >/dev/null 2>&1 || {
    apt-get update -q >/dev/null && apt-get install -y -q libgloo-dev >/dev/null
  }
  exit 0
fi
echo "setup-system: gloo's headers are missing (/usr/include/gloo); install Debian/Ubuntu's" \
  "libgloo-dev (sudo apt-get install libgloo-dev) and run make again" >&2
exit 1
