#!/usr/bin/env bash
# Installs from Debian packages everything moecl's build, tests and tools need.
# Idempotent: packages already present are not reinstalled.
set -u
pkgs=(build-essential ocl-icd-opencl-dev opencl-headers pocl-opencl-icd libcjson-dev clinfo
      unicode-data clang-format cppcheck python3-venv python3-pip gnuplot-nox tmux clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#pkgs[@]} Debian packages already installed"
    exit 0
fi
echo "deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo="sudo -n"
    else
        echo "deps: error: installing packages needs root (run 'sudo make deps'); missing: ${missing[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get update -qq; then
    echo "deps: error: 'apt-get update' failed (no network or no Debian mirror reachable)" >&2
    exit 1
fi
if ! $sudo apt-get install -y -qq "${missing[@]}"; then
    echo "deps: error: 'apt-get install ${missing[*]}' failed (see apt's message above)" >&2
    exit 1
fi
echo "deps: done"
