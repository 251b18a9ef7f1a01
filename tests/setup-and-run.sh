#!/usr/bin/env bash
# The one test command of gridtap (CI runs it through .ci/run).
#
# Setup (stops at the first failure):
#   1. Debian packages: the real servers the integration tests drive (influxd, promtool,
#      collectd, socat, mosquitto, ...), openssl (certificates for the MQTT TLS test) and
#      Debian's python3-venv.
#   2. one wheel build of this checkout (maturin, via the in-tree backend), installed with the
#      [test] extra into the current Python.
#   3. the same wheel into /opt/gridtap-venv (Debian's python3), a gridtap that user `nobody`
#      can run: collectd's exec plugin refuses root, and /root (pyenv) is mode 0700.
#   4. Telegraf (inputs.execd, outputs.file, outputs.prometheus_client) built from the Go module
#      proxy, cached in ~/.cache/gridtap/telegraf-<version>-<plugins>.
#   5. a pinned Home Assistant core from PyPI (with its MQTT/energy/recorder requirements) in
#      ~/.cache/gridtap/ha-venv-<version>, made with pyenv's Python 3.13 for the tests marked
#      `homeassistant` (tests/integration/homeassistant.py install; cold about 2.5 min).
#   (Rust builds go to ~/.cache/gridtap/cargo-target, so a later run only rebuilds what changed.)
# Checks (each runs; the script fails at the end naming every failed one):
#   cargo test, cargo clippy -D warnings, ruff, pytest (whole suite, integration included,
#   missing servers fail instead of skip), benchmarks as a smoke run.
#
# Idempotent: re-running skips installed packages, the cached Telegraf, an intact venv and a
# finished Home Assistant venv.
# Environment: PYTHON (default python3), GRIDTAP_EXEC_VENV (default /opt/gridtap-venv),
# GRIDTAP_SKIP_SETUP=1 to run the checks only.
set -euo pipefail
umask 022

: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
export HOME
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

for d in "$HOME/.cargo/bin" /usr/local/go/bin "$HOME/go/bin" "$HOME/.pyenv/shims"; do
    if [[ -d "$d" && ":$PATH:" != *":$d:"* ]]; then PATH="$PATH:$d"; fi
done
export PATH

PY="${PYTHON:-python3}"
TELEGRAF_VERSION="v1.37.2"
# The build tags are part of the cache key: a binary without outputs.prometheus_client must not
# be taken for one with it.
TELEGRAF_TAGS="custom,inputs.execd,outputs.file,outputs.prometheus_client"
TELEGRAF_DIR="$HOME/.cache/gridtap/telegraf-$TELEGRAF_VERSION-execd-file-prometheus_client"
EXEC_VENV="${GRIDTAP_EXEC_VENV:-/opt/gridtap-venv}"
WHEEL_DIR="$ROOT/target/ci-wheels"
# One Rust build cache for the wheel build, cargo test and clippy, kept between runs (CI gets a
# fresh clone each time; the machine's home directory stays).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gridtap/cargo-target}"
DEB_PACKAGES=(socat mosquitto mosquitto-clients influxdb prometheus prometheus-pushgateway
              prometheus-alertmanager collectd-core openssl python3 python3-venv wrk)
SERVICES=(influxdb prometheus prometheus-pushgateway prometheus-alertmanager mosquitto collectd)

TIMINGS=()
FAILED=()
PYTEST_SUMMARY_FILE=$(mktemp)
trap 'rm -f "$PYTEST_SUMMARY_FILE"' EXIT
T_START=$SECONDS

summary() {
    echo
    echo "== timings =="
    local t
    for t in "${TIMINGS[@]}"; do echo "  $t"; done
    echo "  total: $((SECONDS - T_START)) s"
}

# run_errexit CMD...: run in a subshell with errexit in force; its status goes to STEP_RC
# and the function itself always succeeds. (A function called as `f || ...` runs with
# errexit ignored, subshells included, so that form would hide failures inside the steps.)
STEP_RC=0
run_errexit() {
    set +e
    (set -e; "$@")
    STEP_RC=$?
    set -e
}

# setup_step NAME CMD...: run, time, abort the whole script on failure.
setup_step() {
    local name=$1; shift
    local t0=$SECONDS rc
    echo "== $name =="
    run_errexit "$@"; rc=$STEP_RC
    TIMINGS+=("$(printf '%-28s %4d s  %s' "$name" $((SECONDS - t0)) "$([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)")")")
    if [[ $rc != 0 ]]; then
        echo "FAILED: setup step '$name' exited $rc" >&2
        summary
        exit "$rc"
    fi
}

# check_step NAME CMD...: run, time, remember a failure and go on with the next check.
check_step() {
    local name=$1; shift
    local t0=$SECONDS rc
    echo "== $name =="
    run_errexit "$@"; rc=$STEP_RC
    TIMINGS+=("$(printf '%-28s %4d s  %s' "$name" $((SECONDS - t0)) "$([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)")")")
    if [[ $rc != 0 ]]; then
        echo "FAILED: check '$name' exited $rc" >&2
        FAILED+=("$name")
    fi
}

as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"
    else echo "need root for: $*" >&2; return 1
    fi
}

install_debian_packages() {
    local missing=() p
    for p in "${DEB_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [[ ${#missing[@]} == 0 ]]; then
        echo "all present: ${DEB_PACKAGES[*]}"
        return 0
    fi
    echo "installing: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >/dev/null
    # On a systemd host the packages start their services on the default ports; the tests run
    # their own instances on other loopback ports, so stop them (containers have policy-rc.d).
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        as_root systemctl stop "${SERVICES[@]}" 2>/dev/null || true
    fi
}

build_and_install_wheel() {
    rm -rf "$WHEEL_DIR"
    mkdir -p "$WHEEL_DIR"
    "$PY" -m pip wheel -q --no-deps -w "$WHEEL_DIR" .
    WHEEL=$(wheel_path)
    echo "built $WHEEL"
    "$PY" -m pip install -q --disable-pip-version-check "$WHEEL[test]"
    # Same version number as any earlier install: force this build in.
    "$PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEEL"
    "$PY" -c "import gridtap.cli, gridtap._native" || { echo "gridtap does not import after install" >&2; return 1; }
}

wheel_path() {
    local w=("$WHEEL_DIR"/gridtap-*.whl)
    [[ ${#w[@]} == 1 && -f ${w[0]} ]] || { echo "expected one wheel in $WHEEL_DIR, found: ${w[*]}" >&2; return 1; }
    echo "${w[0]}"
}

make_exec_venv() {
    local WHEEL
    WHEEL=$(wheel_path)
    if [[ $(id -u) != 0 ]]; then
        echo "not root: collectd will exec gridtap as $(id -un) itself; no venv needed"
        return 0
    fi
    if [[ ! -x "$EXEC_VENV/bin/python" ]] || ! "$EXEC_VENV/bin/python" -c "import sys" 2>/dev/null; then
        rm -rf "$EXEC_VENV"
        /usr/bin/python3 -m venv "$EXEC_VENV"
    fi
    "$EXEC_VENV/bin/pip" install -q --disable-pip-version-check "$WHEEL"
    "$EXEC_VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEEL"
    chmod -R a+rX "$EXEC_VENV"
    runuser -u nobody -- "$EXEC_VENV/bin/python" -c "import gridtap, gridtap._native, gridtap_plugins"
    echo "user nobody can import gridtap from $EXEC_VENV"
}

build_telegraf() {
    if [[ -x "$TELEGRAF_DIR/telegraf" ]]; then
        echo "cached: $TELEGRAF_DIR/telegraf"
        return 0
    fi
    mkdir -p "$TELEGRAF_DIR"
    GOBIN="$TELEGRAF_DIR" GOFLAGS=-mod=mod go install -tags "$TELEGRAF_TAGS" \
        "github.com/influxdata/telegraf/cmd/telegraf@$TELEGRAF_VERSION"
    "$TELEGRAF_DIR/telegraf" --version
}

make_ha_venv() {
    "$PY" tests/integration/homeassistant.py install
}

run_pytest() {
    local log rc=0
    log=$(mktemp)
    GRIDTAP_REQUIRE_SERVERS=1 "$PY" -m pytest -q -p no:cacheprovider 2>&1 | tee "$log" || rc=$?
    grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped|deselected)|no tests ran' "$log" | tail -n 1 \
        > "$PYTEST_SUMMARY_FILE" || true
    rm -f "$log"
    if [[ $rc == 5 ]]; then
        echo "pytest collected no tests (exit 5): that is a failure here, we always have tests" >&2
        return 5
    fi
    return "$rc"
}

run_benches() {
    if [[ -f bench/run.py ]]; then
        "$PY" bench/run.py --quick
    else
        echo "no bench/run.py"
    fi
}

if [[ "${GRIDTAP_SKIP_SETUP:-0}" != 1 ]]; then
    setup_step "debian packages" install_debian_packages
    setup_step "wheel build + pip install" build_and_install_wheel
    setup_step "exec venv ($EXEC_VENV)" make_exec_venv
    setup_step "telegraf $TELEGRAF_VERSION" build_telegraf
    setup_step "home assistant venv" make_ha_venv
fi

check_step "cargo test" cargo test --quiet
check_step "cargo clippy" cargo clippy --quiet --all-targets -- -D warnings
check_step "ruff" "$PY" -m ruff check .
check_step "pytest" run_pytest
check_step "benchmarks (smoke)" run_benches

summary
# The test runner's closing line last, so it is what a reader of the tail sees.
if [[ ${#FAILED[@]} != 0 ]]; then
    echo "FAILED checks: ${FAILED[*]}" >&2
    cat "$PYTEST_SUMMARY_FILE"
    exit 1
fi
echo "all checks passed"
cat "$PYTEST_SUMMARY_FILE"
exit 0
