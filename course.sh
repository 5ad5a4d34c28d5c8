#!/usr/bin/env bash
# closekit's entry points, for a fresh Debian/Ubuntu machine with Python 3.11+:
#   bash course.sh open   set everything up, then open the course in JupyterLab
#   bash course.sh test   set everything up, then run the whole test suite (pytest + nbval)
#   bash course.sh book   set everything up, then build the static book into build/book/
#   bash course.sh hub    (root) set up a class's JupyterHub from deploy/, then start it (deploy/README.md)
# Run as root, it installs the system pieces it needs with apt-get; otherwise it says which.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${CLOSEKIT_VENV:-.venv}
# The Python the venv is made from: the distribution's /usr/bin/python3 where it is 3.11+, before whatever
# python3 comes first on PATH (CLOSEKIT_PYTHON picks another). Debian's and Ubuntu's are built with profile-guided
# and link-time optimization into a static binary; a Python built from source without them (pyenv's default)
# spent 20-25% more CPU on every experiment here, and the kernel-free lane took 22-26 s instead of 16-18.
if [ -n "${CLOSEKIT_PYTHON:-}" ]; then
    PYTHON=$CLOSEKIT_PYTHON
elif /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    PYTHON=/usr/bin/python3
else
    PYTHON=python3
fi
# The hub's environment: every student's server runs it, so it must be readable by every account (root's own
# Python, e.g. under /root/.pyenv, is not): Debian's python3 makes it.
HUB_PREFIX=${CLOSEKIT_HUB_PREFIX:-/opt/closekit}
SYSTEM_PACKAGES=(python3-venv graphviz tcpdump)

# system_setup [COMMAND[:PACKAGE] …]: what only the tests need: chromium (tests/test_browser.py drives
# it), qemu and a static busybox (tests/test_kernels.py boots Debian's kernels in a VM)
system_setup() {
    tun_for_users
    local missing=()
    local extra
    for extra in "$@"; do command -v "${extra%%:*}" >/dev/null || missing+=("${extra#*:}"); done
    "$PYTHON" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
    command -v dot >/dev/null || missing+=(graphviz)
    command -v tcpdump >/dev/null || missing+=(tcpdump)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        # without what they only recommend (chromium's and qemu's pull in GStreamer, Samba, printing, speech:
        # 272 packages in 47 s instead of 62 in 16 s on a fresh machine), but with the fonts graphviz and
        # chromium recommend, which lay out and draw the pictures
        local fonts=()
        if [[ " ${missing[*]} " == *" graphviz "* ]]; then fonts+=(fonts-liberation2); fi
        if [[ " ${missing[*]} " == *" chromium "* ]]; then fonts+=(fonts-liberation); fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" "${fonts[@]}" >/dev/null
    else
        echo "closekit needs these system packages: ${missing[*]}" >&2
        echo "install them with: sudo apt-get install ${SYSTEM_PACKAGES[*]} ${*#*:}" >&2
        if [[ " ${missing[*]} " == *" python3-venv "* ]]; then exit 1; fi # (without it, nothing can go on)
    fi
}

# tun_for_users: as root, /dev/net/tun open to every user, as Debian's udev rule makes it (50-udev-default.rules,
# MODE="0666"): a machine without udev (a container, a minimal VM) keeps the kernel's 0600, and the lab of every
# user but root then has no wire (mode netns-loopback: no delays, drops or rules); the hub's students are such users
tun_for_users() {
    if [ "$(id -u)" -eq 0 ] && [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
        chmod 0666 /dev/net/tun
    fi
}

# start_system_setup [COMMAND[:PACKAGE] …]: python3-venv now where it is missing (a venv needs it), then the rest
# of system_setup as a background job ($system), to run beside the venv's set-up: they need nothing of each
# other and mostly wait on downloads and unpacking
start_system_setup() {
    "$PYTHON" -c 'import ensurepip' 2>/dev/null || system_setup
    system_setup "$@" &
    system=$!
}

# without_rfc3987_syntax PYTHON: jsonschema (under nbformat and jupyter-events) imports rfc3987-syntax when it
# starts, which compiles ~35 Earley parsers: 2 s of CPU in every Jupyter server, nbgrader command and nbval
# run. It checks only JSON Schema's "iri" formats, which no Jupyter schema uses; without it jsonschema skips
# them (README, Dependencies). deploy/install.sh does the same for a class's environment.
without_rfc3987_syntax() {
    "$1" -m pip uninstall -y -q rfc3987-syntax 2>&1 | grep -v "not installed" >&2 || true
}

python_setup() {
    local extra=$1
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    # uv (from PyPI, into the venv) installs what pip would, but downloads side by side and compiles the
    # bytecode on every core: a fresh venv's setup took 28 s instead of pip's 72 s here. Where uv cannot
    # be had or cannot install (offline, uv asks the index again; pip finds everything already there), pip
    # does it.
    if ! { [ -x "$VENV/bin/uv" ] || "$VENV/bin/python" -m pip install -q uv; } ||
        ! "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --compile-bytecode -e ".[$extra]"; then
        echo "closekit: uv could not install (above); installing with pip" >&2
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e ".[$extra]"
    fi
    without_rfc3987_syntax "$VENV/bin/python"
    # closekit's own bytecode, once: an editable install compiles none, and where PYTHONDONTWRITEBYTECODE is
    # set (CI) every kernel, helper and nbgrader command would compile the package again (~70 ms each)
    "$VENV/bin/python" -m compileall -q closekit
    # JupyterLab's closekit-answers extension (a clicked answer is written into the notebook), no news
    # popup, and nbgrader pointed at exercises/ wherever it starts: an editable install has no data files.
    "$VENV/bin/python" -m closekit.exercises.jupyter_setup --course exercises >/dev/null
}

# fetch_debian12_kernel: Debian 12's kernel package, unpacked into the cache, for the ledger in a VM
# (tests/test_kernels.py); where it cannot be had, that test says so and skips
fetch_debian12_kernel() {
    "$VENV/bin/closekit" kernels fetch 6.1 >/dev/null 2>&1 ||
        { [ "$(id -u)" -eq 0 ] && apt-get update -qq && "$VENV/bin/closekit" kernels fetch 6.1 >/dev/null; } ||
        echo "closekit: could not fetch Debian 12's kernel package; tests/test_kernels.py will skip its VM" >&2
}

# hub_setup: what a hub needs besides closekit's own setup: node and the proxy (npm), the hub's environment
# (closekit from this repository, not editable, with JupyterHub), then the accounts and folders of the roster.
hub_setup() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "the hub makes accounts and starts servers as them: run bash course.sh hub as root" >&2
        exit 1
    fi
    system_setup
    hub_environment
}

# hub_environment: node, npm and the proxy, then the environment every student's server runs (root only)
hub_environment() {
    local missing=()
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    /usr/bin/python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! command -v configurable-http-proxy >/dev/null; then
        # the proxy's current release needs node 20; Debian 12's node is 18, which its 4.x line still runs
        local proxy=configurable-http-proxy
        [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] || proxy=configurable-http-proxy@4
        npm install -g --silent "$proxy" >/dev/null
    fi
    bash deploy/install.sh "$HUB_PREFIX" .
}

case "${1:-}" in
    open)
        start_system_setup
        python_setup lab
        wait "$system"
        exec "$VENV/bin/closekit" lab "${@:2}"
        ;;
    test)
        # side by side: the system packages, closekit's venv and (as root) the environment of the class's hub
        # tests/test_hub.py runs; what only the live lane needs (that environment, Debian 12's kernel) goes on
        # beside ruff and the kernel-free lane. From a fresh machine the set-up took 30 s instead of 96 here.
        start_system_setup chromium qemu-system-x86_64:qemu-system-x86 busybox:busybox-static
        hub=""
        if [ "$(id -u)" -ne 0 ]; then
            echo "not root: tests/test_hub.py will skip" >&2
        elif command -v node >/dev/null && command -v npm >/dev/null; then
            hub_environment &
            hub=$!
        fi
        python_setup test
        wait "$system"
        if [ -z "$hub" ] && [ "$(id -u)" -eq 0 ]; then
            hub_environment & # (after the system packages: it installs node with apt first)
            hub=$!
        fi
        fetch_debian12_kernel &
        kernel=$!
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        # two lanes (tests/conftest.py): the kernel-free one first (the engine's rules, queries, checks and
        # words on stored traces, in under 30 s), then the live one (experiments, browsers, nbgrader, VMs,
        # the hub, and nbval over the notebooks; a file stays on one worker, the longest start first:
        # tests/conftest.py's _live_lane_order, which xdist keeps with --no-loadscope-reorder)
        "$VENV/bin/python" -m pytest -n 2 --kernel-free tests "${@:2}"
        wait "$kernel"
        if [ -n "$hub" ]; then wait "$hub"; fi
        exec "$VENV/bin/python" -m pytest -n 2 --dist loadfile --no-loadscope-reorder --live-lane \
            --nbval --nbval-current-env --nbval-sanitize-with tests/nbval.cfg \
            tests notebooks exercises/solutions "${@:2}"
        ;;
    book)
        system_setup
        python_setup book
        exec "$VENV/bin/python" -m closekit.book build --out build/book "${@:2}"
        ;;
    hub)
        hub_setup
        srv=${CLOSEKIT_HUB_SRV:-/srv/closekit}
        mkdir -p "$srv"
        if [ ! -f "$srv/roster.csv" ]; then
            echo "no roster yet: write $srv/roster.csv (see deploy/roster.example.csv), then run this again" >&2
            exit 1
        fi
        CLOSEKIT_HUB_SRV=$srv "$HUB_PREFIX/bin/python" deploy/closekit_hub.py setup
        PATH="$HUB_PREFIX/bin:$PATH" CLOSEKIT_HUB_SRV=$srv exec "$HUB_PREFIX/bin/jupyterhub" \
            -f deploy/jupyterhub_config.py "${@:2}"
        ;;
    *)
        echo "usage: bash course.sh open | test | book | hub" >&2
        exit 2
        ;;
esac
