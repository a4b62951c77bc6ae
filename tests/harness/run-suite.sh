#!/usr/bin/env bash
# The whole test suite (what `make test` and .ci/run run): lint, sanity, unit
# tests, then every molecule scenario on real VMs. Prints per-stage timings.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
export SECVIRT_TIMINGS=$PWD/.cache/timings.tsv
# Every VM this run starts inherits the id, so the final reap stops exactly
# this run's leftovers and never another run's (a demo, a second checkout).
SECVIRT_RUN_ID=suite-$$-$(date +%s)
export SECVIRT_RUN_ID
mkdir -p .cache && : >"$SECVIRT_TIMINGS"
stage=tests/harness/stage.sh
suite_start=$(date +%s)

summary() {
  # Whatever happened, no VM of ours may outlive the suite.
  .venv/bin/python tests/harness/vm.py reap >/dev/null 2>&1 || true
  printf '\n\033[1mStage timings\033[0m\n'
  awk -F'\t' '{printf "  %-28s %-14s %4dm%02ds\n", $1, $2, int($3/60), $3%60}' "$SECVIRT_TIMINGS"
  total=$(( $(date +%s) - suite_start ))
  printf '  %-28s %-14s %4dm%02ds\n' total "$1" $((total / 60)) $((total % 60))
}
trap 'summary INTERRUPTED; exit 130' INT TERM

run() { "$stage" "$@" || { summary FAILED; exit 1; }; }

run yamllint .venv/bin/yamllint -s .
run ansible-lint .venv/bin/ansible-lint
run ansible-test-sanity tests/harness/sanity.sh
run unit .venv/bin/pytest -q -p no:cacheprovider tests/unit
run image .venv/bin/python tests/harness/vm.py image
for scenario in "$@"; do
  run "molecule:$scenario" .venv/bin/molecule test -s "$scenario"
done
summary PASSED
