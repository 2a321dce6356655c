#!/usr/bin/env bash
# Makes sure the Debian packages the project needs are installed.
# Usage: scripts/ensure-system-packages.sh redis-server [kcat java=openjdk-17-jre-headless …]
# Each argument is a Debian package named after the command it provides, or COMMAND=PACKAGE
# where the names differ. As root the missing ones are installed with apt-get; otherwise this
# prints the exact command to run and fails.
set -euo pipefail

missing=()
for arg in "$@"; do
  cmd=${arg%%=*}
  pkg=${arg#*=}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/bin/$cmd" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi

echo "error: missing system packages: ${missing[*]}" >&2
echo "install them with:  sudo apt-get install -y ${missing[*]}" >&2
exit 1
