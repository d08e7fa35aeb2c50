#!/usr/bin/env bash
# Set up this checkout on Debian 12 or 13, idempotently:
#   1. install the Debian packages vmesh needs (apt-get; as root, or with non-interactive sudo);
#   2. create .venv and install the project with its dev extras, again only when pyproject.toml
#      (or setup.py, or the C data plane it builds) changed since the last install (stamp file
#      .venv/.vmesh-installed).
# Environment: PYTHON (interpreter for the venv, default python3), VMESH_SKIP_APT=1 (skip step 1),
# VMESH_PACKAGES (space-separated list replacing the Debian packages below).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# chromium: browser tests and the console; postgresql: the tests' second database;
# fonts-noto-cjk: Chinese text in the browser; ffmpeg, janus, nats-server, iproute2: media, WebRTC
# edge, federation bus and the network-namespace test bed of the next issues; python3-venv: .venv;
# gir1.2-gst-rtsp-server-1.0, python3-gi, gstreamer1.0-plugins-*: the tests' real RTSP server.
DEFAULT_PACKAGES="chromium postgresql fonts-noto-cjk ffmpeg janus nats-server iproute2 python3-venv gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly sip-tester iptables build-essential python3-dev libjs-leaflet"
read -r -a PACKAGES <<< "${VMESH_PACKAGES:-$DEFAULT_PACKAGES}"

say() { printf 'setup: %s\n' "$*" >&2; }

install_packages() {
    if [[ "${VMESH_SKIP_APT:-0}" == 1 ]]; then
        say "VMESH_SKIP_APT=1: not checking Debian packages"
        return 0
    fi
    if ! command -v dpkg-query >/dev/null 2>&1; then
        say "this is not a Debian system (no dpkg-query)."
        say "install the equivalents of: ${PACKAGES[*]}; then run again with VMESH_SKIP_APT=1"
        exit 1
    fi
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]} == 0)); then
        say "Debian packages present: ${PACKAGES[*]}"
        return 0
    fi
    local sudo=()
    if ((EUID != 0)); then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            say "these Debian packages are missing: ${missing[*]}"
            say "this user is not root and cannot use sudo without a password. As root, run:"
            say "    apt-get update && apt-get install -y ${missing[*]}"
            say "then run this command again."
            exit 1
        fi
    fi
    say "installing missing Debian packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
        "${missing[@]}"
}

python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null
}

install_venv() {
    local python="${PYTHON:-python3}"
    if [[ -x .venv/bin/python ]] && ! python_ok .venv/bin/python; then
        say ".venv is broken or older than Python 3.11: making it again"
        rm -rf .venv
    fi
    if [[ ! -x .venv/bin/python ]]; then
        if ! python_ok "$python"; then
            say "vmesh needs Python 3.11 or newer; '$python' is missing or older (set PYTHON=...)"
            exit 1
        fi
        say "creating .venv with $("$python" -c 'import sys; print(sys.executable)')"
        "$python" -m venv .venv
    fi
    local want have=""
    # the C data plane is built at install time: its source and setup.py count too
    want="$(cat pyproject.toml setup.py src/vmesh/switch/_dataplane.c | sha256sum | cut -d' ' -f1)"
    [[ -f .venv/.vmesh-installed ]] && have="$(cat .venv/.vmesh-installed)"
    if [[ "$want" == "$have" ]]; then
        say ".venv is up to date with pyproject.toml, setup.py and the C data plane"
        return 0
    fi
    say "installing vmesh with dev extras into .venv (pyproject.toml, setup.py or the C data plane changed)"
    local logfile=.venv/pip-install.log
    if ! { .venv/bin/python -m pip install --upgrade pip &&
           .venv/bin/python -m pip install -e '.[dev]'; } >"$logfile" 2>&1; then
        tail -n 40 "$logfile" >&2
        say "pip install failed; the whole output is in $logfile"
        exit 1
    fi
    echo "$want" > .venv/.vmesh-installed
}

install_packages
install_venv
