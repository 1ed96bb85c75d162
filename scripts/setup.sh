#!/usr/bin/env bash
# Run first by `npm start` and `npm test` (npm's prestart/pretest), so that one command works on a
# fresh Debian/Ubuntu machine: the system packages the local sandbox needs (with --for-tests, the
# browser the web page's tests drive too), then the npm packages whenever package-lock.json is not
# the one they were installed from. Each step does nothing when it is done already.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-system-packages.sh "$@"
installed=node_modules/.installed-from-lock
wanted=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f $installed || $(cat "$installed") != "$wanted" ]]; then
  echo "npm packages: installing from package-lock.json"
  npm ci --no-audit --no-fund
  echo "$wanted" >"$installed"
fi
