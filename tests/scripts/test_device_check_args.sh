#!/usr/bin/env bash
# Tests scripts/device_check's command line on a machine with no device: --help and no argument
# print the usage (exit 2); a BUDGET_S that is not a whole number from 180 to 440, or a third
# argument, is refused with one line (exit 1) before anything runs, so that a rerun with a typo
# costs no device time; a valid budget is taken (the run then stops where device-kit is missing).
# Usage: test_device_check_args.sh REPO
set -euo pipefail

check="$1/scripts/device_check"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/repo"  # an empty "repo root": no build-device/, no device-kit/
cd "$scratch/repo"
export TMPDIR="$scratch"  # the run's scratch folder, removed with the rest

failures=0
# expect NAME EXPECTED_EXIT PATTERN ARGS...: PATTERN (grep -E) must match stdout and stderr.
expect() {
  local name="$1" expected_code="$2" pattern="$3"
  shift 3
  local actual code=0
  actual="$(bash "$check" "$@" 2>&1)" || code=$?
  if [[ "$code" != "$expected_code" ]] || ! grep -qE -- "$pattern" <<<"$actual"; then
    echo "FAIL $name: scripts/device_check $*"
    echo "  expected exit $expected_code and /$pattern/; got exit $code: $actual"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

expect "help" 2 'scripts/device_check OUTDIR \[BUDGET_S\]' --help
expect "no argument" 2 'timeout_s=540'
for budget in x 179 441 500 -5 1e3 0200 '200 ' '' 18446744073709551816; do
  expect "budget '$budget'" 1 \
    "^device_check: BUDGET_S must be a whole number of seconds from 180 to 440, not '$budget'\$" \
    "$scratch/out" "$budget"
done
expect "three arguments" 1 '^device_check: takes OUTDIR and at most BUDGET_S, not 3 arguments$' \
  "$scratch/out" 200 extra
[[ ! -e "$scratch/out" ]] || {
  echo "FAIL a refused command line created OUTDIR"
  failures=$((failures + 1))
}
# Budgets that are taken: the run starts and stops at the missing binaries.
for budget in 180 440; do
  expect "budget $budget taken" 1 'build-device/rbm_cpu missing: run scripts/device_check --prepare' \
    "$scratch/out$budget" "$budget"
done
((failures == 0)) && echo "all passed" || {
  echo "$failures failed"
  exit 1
}
