#!/usr/bin/env bash
# closekit's entry points, for a fresh Debian/Ubuntu machine with Python 3.11+:
#   bash course.sh open   set everything up, then open the course in JupyterLab
#   bash course.sh test   set everything up, then run the whole test suite (pytest + nbval)
#   bash course.sh book   set everything up, then build the static book into build/book/
# Run as root, it installs the system pieces it needs with apt-get; otherwise it says which.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${CLOSEKIT_VENV:-.venv}
SYSTEM_PACKAGES=(python3-venv graphviz tcpdump)

# system_setup [COMMAND[:PACKAGE] …]: what only the tests need: chromium (tests/test_browser.py drives
# it), qemu and a static busybox (tests/test_kernels.py boots Debian's kernels in a VM)
system_setup() {
    local missing=()
    local extra
    for extra in "$@"; do command -v "${extra%%:*}" >/dev/null || missing+=("${extra#*:}"); done
    python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
    command -v dot >/dev/null || missing+=(graphviz)
    command -v tcpdump >/dev/null || missing+=(tcpdump)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "closekit needs these system packages: ${missing[*]}" >&2
        echo "install them with: sudo apt-get install ${SYSTEM_PACKAGES[*]} ${*#*:}" >&2
        [[ " ${missing[*]} " == *" python3-venv "* ]] && exit 1
    fi
}

python_setup() {
    local extra=$1
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[$extra]"
    # JupyterLab's closekit-answers extension (a clicked answer is written into the notebook), no news
    # popup, and nbgrader pointed at exercises/ wherever it starts: an editable install has no data files.
    "$VENV/bin/python" -m closekit.exercises.jupyter_setup --course exercises >/dev/null
}

case "${1:-}" in
    open)
        system_setup
        python_setup lab
        exec "$VENV/bin/closekit" lab "${@:2}"
        ;;
    test)
        system_setup chromium qemu-system-x86_64:qemu-system-x86 busybox:busybox-static
        python_setup test
        # Debian 12's kernel package, unpacked into the cache, for the ledger in a VM (tests/test_kernels.py)
        "$VENV/bin/closekit" kernels fetch 6.1 >/dev/null 2>&1 ||
            { [ "$(id -u)" -eq 0 ] && apt-get update -qq && "$VENV/bin/closekit" kernels fetch 6.1 >/dev/null; } ||
            echo "closekit: could not fetch Debian 12's kernel package; tests/test_kernels.py will skip its VM" >&2
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        exec "$VENV/bin/python" -m pytest -n 2 --dist loadfile \
            --nbval --nbval-current-env --nbval-sanitize-with tests/nbval.cfg \
            tests notebooks exercises/solutions "${@:2}"
        ;;
    book)
        system_setup
        python_setup book
        exec "$VENV/bin/python" -m closekit.book build --out build/book "${@:2}"
        ;;
    *)
        echo "usage: bash course.sh open | test | book" >&2
        exit 2
        ;;
esac
