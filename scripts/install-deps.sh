#!/usr/bin/env bash
# Installs what `make test` needs beyond Go on a fresh Debian machine:
# make, python3 (the stdlib-only example agent and its tests),
# python3-cryptography (ed25519, for the example agent's quorum votes) and iproute2
# (network namespaces for the multi-host e2e tests when run as root), and
# prometheus (the real server the metrics e2e test scrapes the nodes with),
# chromium (the headless browser the dashboard e2e test drives) and nodejs
# (the dashboard UI's unit tests; `make ui` also needs npm).
set -euo pipefail
need=()
command -v make >/dev/null 2>&1 || need+=(make)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# The Python example agent signs quorum votes with ed25519, which the
# standard library lacks; without it the Python voting tests skip.
python3 -c 'import cryptography.hazmat.primitives.asymmetric.ed25519' >/dev/null 2>&1 || need+=(python3-cryptography)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${need[*]}; install them (as root: apt-get install ${need[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
