#!/usr/bin/env bash
# Tests scripts/device_check's command line on a machine with no device: --help prints the usage
# (exit 0), and so does no argument (exit 2); a BUDGET_S that is not a whole number from 180 to
# 440, a third argument or an unknown option is refused with one line (exit 2, as the other
# scripts' usage errors) before anything runs, so that a rerun with a typo costs no device time;
# a valid budget is taken (the run then stops where device-kit is missing, leaving no scratch).
# Also that racecheck's exclusion of cuBLAS's kernels by name spares every kernel of ours.
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

expect "help" 0 '^  scripts/device_check OUTDIR \[BUDGET_S\]' --help
expect "-h" 0 '^  scripts/device_check OUTDIR \[BUDGET_S\]' -h
expect "no argument" 2 'timeout_s=540'
for budget in x 179 441 500 -5 1e3 0200 '200 ' '' 18446744073709551816; do
  expect "budget '$budget'" 2 \
    "^device_check: BUDGET_S must be a whole number of seconds from 180 to 440, not '$budget' \(see --help\)\$" \
    "$scratch/out" "$budget"
done
expect "three arguments" 2 '^device_check: takes OUTDIR and at most BUDGET_S, not 3 arguments' \
  "$scratch/out" 200 extra
# A mistyped option is named, not taken as OUTDIR (mkdir's own error had answered it).
for option in --prepar --bogus -x; do
  expect "option $option" 2 "^device_check: unknown option $option \(see --help\)\$" "$option"
done
expect "--prepare with an argument" 2 '^device_check: --prepare takes no argument' --prepare extra
[[ ! -e "$scratch/out" ]] || {
  echo "FAIL a refused command line created OUTDIR"
  failures=$((failures + 1))
}
# Budgets that are taken: the run starts and stops at the missing binaries, and removes its
# scratch folder (TMPDIR/rbm-device-check.XXXXXX) as it ends.
for budget in 180 440; do
  expect "budget $budget taken" 1 'build-device/rbm_cpu missing: run scripts/device_check --prepare' \
    "$scratch/out$budget" "$budget"
done
if compgen -G "$scratch/rbm-device-check.*" >/dev/null; then
  echo "FAIL a run left its scratch folder: $(ls -d "$scratch"/rbm-device-check.*)"
  failures=$((failures + 1))
fi
# racecheck's exclusion of cuBLAS's kernels by name must not leave out a kernel of ours: no
# __global__ function in kernels/ matches it, and cuBLAS's SGEMM and SGEMV names do.
exclude_regex=$(sed -n "s/^ *local race_exclude='regex=\(.*\)'\$/\1/p" "$check")
if [[ -z "$exclude_regex" ]]; then
  echo "FAIL racecheck's --kernel-name-exclude regex not found in scripts/device_check"
  failures=$((failures + 1))
else
  failures_before=$failures
  ours=$(cat "$1"/kernels/*.cu "$1"/kernels/*.cuh |
    tr '\n' ' ' | sed -E 's/__launch_bounds__ *\([^)]*\)//g' | grep -oE '__global__[^(]*\(' |
    grep -oE '[A-Za-z_][A-Za-z0-9_]*\($' | tr -d '(' | sort -u)
  # Kernels declared with __launch_bounds__ (the fused engine's, AIS's) among them.
  for name in fused_cd_kernel ais_hidden_kernel; do
    grep -qx "$name" <<<"$ours" || {
      echo "FAIL our kernel $name not found among: $ours"
      failures=$((failures + 1))
    }
  done
  [[ $(wc -l <<<"$ours") -ge 10 ]] || {
    echo "FAIL found only these kernels of ours: $ours"
    failures=$((failures + 1))
  }
  for name in $ours; do
    if grep -qE -- "$exclude_regex" <<<"$name"; then
      echo "FAIL racecheck's exclusion /$exclude_regex/ leaves out our kernel $name"
      failures=$((failures + 1))
    fi
  done
  for name in gemv2T_kernel_val gemvNSP_kernel _ZN7cutlass7Kernel2I38cutlass_80_simt_sgemm_128x32_8x5_nn     sm90_xmma_gemm_f32f32_tf32f32_f32_tn_n_tilesize128x128x32 gemmSN_NN_kernel splitKreduce_kernel \
    nvjet_tst_128x8_64x12_2x1_v_bz_splitK_TNT; do
    if ! grep -qE -- "$exclude_regex" <<<"$name"; then
      echo "FAIL racecheck's exclusion /$exclude_regex/ keeps cuBLAS's $name"
      failures=$((failures + 1))
    fi
  done
  # Both racecheck steps (ours but the fused kernel's, and the fused kernel's) use it.
  uses=$(grep -c -- '--kernel-name-exclude "$race_exclude"' "$check" || true)
  if [[ "$uses" != 2 ]]; then
    echo "FAIL racecheck's exclusion is used by $uses steps, not both racecheck steps"
    failures=$((failures + 1))
  fi
  ((failures > failures_before)) ||
    echo "ok   racecheck's exclusion: none of our $(wc -l <<<"$ours") kernels, cuBLAS's names"
fi
((failures == 0)) && echo "all passed" || {
  echo "$failures failed"
  exit 1
}
