#!/usr/bin/env bash
# Installs what chargewatch needs on a fresh Debian with Python 3.11+: a virtualenv in .venv with
# the project and its development tools. (Debian's influxdb package is installed on first use by
# `chargewatch influxd start` and by the test suite.) Safe to run again: it skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "chargewatch needs Python 3.11 or newer as '$python' (set PYTHON=... to choose one)" >&2
    exit 2
fi

sudo_=""
[ "$(id -u)" -eq 0 ] || sudo_="sudo"

if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv 2>/dev/null; then
        # Debian splits venv out of the interpreter package.
        rm -rf .venv
        $sudo_ apt-get update -q
        DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q python3-venv
        "$python" -m venv .venv
    fi
fi

# Reinstall only when the dependency list changed.
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
