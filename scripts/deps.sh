#!/usr/bin/env bash
# deps.sh - installs the Debian packages cloudtaser needs to build and test,
# only those that are missing. Sourced by demo.sh and test.sh.
set -euo pipefail

CT_PACKAGES=(
  gcc libc6-dev pkg-config meson ninja-build python3
  libwolfssl-dev libsqlite3-dev
  libjansson-dev     # JSON records in the store (cluster registration)
  libcurl4-openssl-dev  # HTTPS client of the Vault store and the Kubernetes client
  libyaml-dev        # kubeconfig files (Kubernetes client)
  libmicrohttpd-dev  # HTTP servers: the library's Vault API broker (broker.c), cloudtaser-beacon's operations port, tests/fake-vault, tests/fake-k8s
  libgnutls28-dev    # tests/fake-vault and fake-k8s: demanding client certificates (MHD's TLS is GnuTLS)
  check openssl valgrind binutils
  clang libclang-rt-dev
  python3-hvac       # tests: a stock Vault client library against the broker (broker_e2e)
  curl               # tests: cloudtaser-beacon's /metrics, /healthz, /readyz; raw requests to tests/fake-vault
  abigail-tools      # scripts/abi-check.sh: abidw / abidiff against abi/libcloudtaser.abi
  scdoc              # man pages from docs/man/*.scd (meson builds and installs them)
  python3-yaml       # tests/packaging/test_helm.py parses the rendered manifests
  systemd            # systemd-analyze verify of deploy/systemd/*.service
)

ct_install_deps() {
  local missing=() p
  for p in "${CT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    echo "deps: all ${#CT_PACKAGES[@]} packages present"
    return 0
  fi
  echo "deps: installing ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; return 1; }
    sudo="sudo"
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}
