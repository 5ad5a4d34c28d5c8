#!/usr/bin/env bash
# The environment every server of a class runs: closekit from this checkout (not editable, so its files are in
# the environment, readable by every account) with JupyterLab, nbgrader, JupyterHub, and nbgrader's config for
# the hub. One recipe for both places a class runs: `bash course.sh hub` (one machine; tests/test_hub.py starts
# the hub that way) and deploy/z2jh/Dockerfile (the single-user image for Zero to JupyterHub).
#   bash deploy/install.sh PREFIX [CHECKOUT]    (Debian's python3 and python3-venv must be installed)
set -euo pipefail
prefix=$1
checkout=${2:-$(dirname "$0")/..}
python=${CLOSEKIT_PYTHON:-/usr/bin/python3}  # not root's own Python (e.g. under /root): students must run it

[ -x "$prefix/bin/python" ] || "$python" -m venv "$prefix"
# uv (from PyPI, into the environment) installs what pip would, side by side and compiling on every core: a new
# environment took 33 s with pip and 10 s with uv here. Where uv cannot be had or cannot install (offline, uv
# asks the index again), pip does it, as course.sh's python_setup does.
uv_or_pip() {
    if ! { [ -x "$prefix/bin/uv" ] || "$prefix/bin/python" -m pip install -q uv; } ||
        ! "$prefix/bin/uv" pip install -q --python "$prefix/bin/python" --compile-bytecode "$@"; then
        echo "install.sh: uv could not install (above); installing with pip" >&2
        "$prefix/bin/python" -m pip install -q --upgrade pip
        "$prefix/bin/python" -m pip install -q "${@/#--reinstall/--force-reinstall}"
    fi
}
# the dependencies when pyproject.toml changed since they were installed; this checkout's closekit always
if ! cmp -s "$checkout/pyproject.toml" "$prefix/.closekit-pyproject.toml"; then
    uv_or_pip "$checkout[hub]"
    cp "$checkout/pyproject.toml" "$prefix/.closekit-pyproject.toml"
fi
uv_or_pip --no-deps --reinstall "$checkout"
# 2 s less CPU in every student's server and nbgrader command (course.sh, without_rfc3987_syntax, says why)
"$prefix/bin/python" -m pip uninstall -y -q rfc3987-syntax 2>&1 | grep -v "not installed" >&2 || true
CLOSEKIT_HUB_PREFIX=$prefix "$prefix/bin/python" "$checkout/deploy/closekit_hub.py" configs
