#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the local sandbox needs: bubblewrap (namespaces),
# socat (the sandbox's bridge to the API), util-linux (setpriv, to drop to the sandbox uid; unshare,
# for each sandbox's own mount namespace), python3-seccomp (libseccomp's bindings, which generate
# the sandbox's seccomp filter); with --for-tests also chromium with a font, the browser the web
# page's tests drive.
set -euo pipefail
packages=(bubblewrap socat util-linux python3-seccomp)
case "${1:-}" in
  --for-tests) packages+=(chromium fonts-dejavu-core) ;;
  "") ;;
  *) echo "usage: $0 [--for-tests]" >&2; exit 2 ;;
esac
missing=()
for package in "${packages[@]}"; do
  # Installed means "ii": dpkg -s also answers for a package removed but for its config files.
  [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null) == "ii " ]] || missing+=("$package")
done
if ((${#missing[@]} == 0)); then
  echo "system packages: all present"
  exit 0
fi
echo "system packages: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
$sudo apt-get update -qq
# Through env: sudo resets the environment, and a debconf prompt would wait for ever.
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
