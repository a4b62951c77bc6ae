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
  failure_excerpts
}

failure_excerpts() {
  # The end of the output is what a CI page shows first: repeat there, for
  # each failed scenario, the lines that say why (its whole log is above).
  local name log
  while IFS=$'\t' read -r name status _; do
    case $name:$status in molecule:*:FAILED*) ;; *) continue ;; esac
    log=$PWD/.cache/logs/molecule-${name#molecule:}.log
    [ -f "$log" ] || continue
    printf '\n\033[1mWhy %s failed\033[0m (last lines of %s that say so)\n' "$name" "${log#"$PWD"/}"
    sed 's/\x1b\[[0-9;]*m//g' "$log" |
      grep -E 'fatal:|UNREACHABLE|FAILED!|FAILED |^E  |ERROR|Error:|msg:|failed=[1-9]|unreachable=[1-9]' |
      grep -v 'All assertions passed' | cut -c1-300 | tail -n 15
  done <"$SECVIRT_TIMINGS"
}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; summary INTERRUPTED; exit 130' INT TERM

run() { "$stage" "$@" || { summary FAILED; exit 1; }; }

run yamllint .venv/bin/yamllint -s .
run ansible-lint .venv/bin/ansible-lint
run ansible-test-sanity tests/harness/sanity.sh
run unit .venv/bin/pytest -q -p no:cacheprovider tests/unit
run image .venv/bin/python tests/harness/vm.py image

# Molecule scenarios run in SECVIRT_LANES parallel lanes (default 2). Under
# TCG one scenario alone keeps the 2 cores only 57-62% busy (sampled from
# /proc/stat every 5 s during `molecule test -s libvirt_modules`), so a second
# lane uses the idle share. Scenarios are dealt longest first to the lane with the least
# work, by the minutes below (measured alone, `make test`; unknown: 10).
declare -A minutes=([libvirt_remote]=27 [audit]=15 [storage]=13 [vlan_bridges]=12
                    [libvirt_modules]=9 [pki]=9 [default]=3)
lanes=${SECVIRT_LANES:-2}
logs=$PWD/.cache/logs
mkdir -p "$logs"
mapfile -t ordered < <(for s in "$@"; do printf '%s %s\n' "${minutes[$s]:-10}" "$s"; done | sort -rn | cut -d' ' -f2)
declare -a lane_load lane_list
for ((i = 0; i < lanes; i++)); do lane_load[i]=0; lane_list[i]=""; done
for s in "${ordered[@]}"; do
  best=0
  for ((i = 1; i < lanes; i++)); do (( lane_load[i] < lane_load[best] )) && best=$i; done
  lane_load[best]=$(( lane_load[best] + ${minutes[$s]:-10} ))
  lane_list[best]+="$s "
done

lane() {
  # One lane: its scenarios in turn. Each scenario's output goes to its own
  # log, printed whole (under a lock, never interleaved) when it ends. A
  # failed scenario does not stop the lane: one run reports every failure.
  local s rc failed=0
  for s in "$@"; do
    "$stage" "molecule:$s" .venv/bin/molecule test -s "$s" >"$logs/molecule-$s.log" 2>&1
    rc=$?
    { flock 9; cat "$logs/molecule-$s.log"; } 9>"$logs/.print-lock"
    [ $rc = 0 ] || failed=1
  done
  return $failed
}

for ((i = 0; i < lanes; i++)); do
  [ -n "${lane_list[i]}" ] || continue
  printf '\033[1mlane %d: %s(~%d min)\033[0m\n' "$i" "${lane_list[i]}" "${lane_load[i]}" >&2
  # shellcheck disable=SC2086  # the list is space-separated scenario names
  lane ${lane_list[i]} &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ $failed = 0 ] || { summary FAILED; exit 1; }
summary PASSED
