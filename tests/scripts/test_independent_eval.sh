#!/usr/bin/env bash
# Tests scripts/independent_eval.py against rbm_cpu eval on small models (H 8, binary and ternary
# hidden units, visible biases, digit 5), where both compute exactly what they can: the
# pseudo-log-likelihood of the scored images is exact in both (doubles, different summation orders:
# relative tolerance 1e-9), their mean free energy too, where rbm_cpu's products with W are float
# GEMMs (784-term float sums: relative tolerance 1e-6), rbm_cpu eval's log Z is exact (H <= 12),
# so the script's exact lower bound must lie below it; and the script must score the images
# run.json records (digit 5, its data folder). Its AIS is random and is checked by its own --check.
# Usage: test_independent_eval.sh REPO RBM_CPU MNIST_DIR
set -euo pipefail

repo="$1" trainer="$2" mnist="$3"
script="$repo/scripts/independent_eval.py"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"

# numpy with the system's python3, as scripts/setup installs it.
python=/usr/bin/python3
[[ -x "$python" ]] || python=python3

failures=0
for type in binary ternary; do
  "$trainer" --hidden-type "$type" --visible-bias --hidden 8 --digit 5 --iters 300 \
    --log-every 300 --data "$mnist" --out "$type" >/dev/null 2>&1
  "$python" "$script" --runs 20 --betas 500 --json "$type.json" "$type" >/dev/null
  "$trainer" eval "$type" --json >"$type.eval.json"
  if ! "$python" - "$type" <<'PY'; then
import json, sys
name = sys.argv[1]
ours = json.load(open(name + ".eval.json"))
theirs = json.load(open(name + ".json"))
problems = []
def close(what, a, b, rel=1e-9):
    if abs(a - b) > rel * max(abs(a), abs(b)):
        problems.append("%s: rbm_cpu eval %.17g, independent_eval.py %.17g" % (what, a, b))
if ours["log_z_method"] != "exact":
    problems.append("rbm_cpu eval did not compute log Z exactly: " + ours["log_z_method"])
close("PLL", ours["avg_pll"], theirs["test_avg_pll"])
# avg log p = -F - log Z: rbm_cpu eval's exact log Z gives its mean -F.
close("mean -F", ours["avg_log_p"] + ours["log_z"], theirs["test_avg_neg_free_energy"], 1e-6)
if not theirs["log_z_lower_bound"] <= ours["log_z"]:
    problems.append("the exact lower bound %.6f is above the exact log Z %.6f"
                    % (theirs["log_z_lower_bound"], ours["log_z"]))
for key, want in (("hidden_type", name), ("digit", 5), ("digit_from", "run.json"),
                  ("n_test", ours["n_images"])):
    if theirs.get(key) != want:
        problems.append("%s: %r, expected %r" % (key, theirs.get(key), want))
for p in problems:
    print("  " + p)
sys.exit(1 if problems else 0)
PY
    echo "FAIL $type"
    failures=$((failures + 1))
  else
    echo "ok   $type"
  fi
done
if ((failures)); then
  echo "$failures failures"
  exit 1
fi
echo "all independent_eval.py checks passed"
