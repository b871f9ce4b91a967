#!/usr/bin/env bash
# Tests scripts/device_check's command line on a machine with no device: --help and no argument
# print the usage (exit 2); a BUDGET_S that is not a whole number from 60 to 500 is refused with one
# line (exit 1) before anything runs, so that a rerun with a typo costs no device time.
# Usage: test_device_check_args.sh REPO
set -euo pipefail

check="$1/scripts/device_check"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

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
for budget in x 59 501 -5 1e3 0200 '200 '; do
  expect "budget '$budget'" 1 \
    "^device_check: BUDGET_S must be a whole number of seconds from 60 to 500, not '$budget'\$" \
    "$scratch/out" "$budget"
done
[[ ! -e "$scratch/out" ]] || {
  echo "FAIL a refused budget created OUTDIR"
  failures=$((failures + 1))
}
((failures == 0)) && echo "all passed" || {
  echo "$failures failed"
  exit 1
}
