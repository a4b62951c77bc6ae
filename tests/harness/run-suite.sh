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
  printf '  %-28s %-14s %7s %6s %8s\n' stage status time tasks s/task
  local name status secs tasks
  while IFS=$'\t' read -r name status secs; do
    tasks=""
    # Task executions (one per task and host) over every Ansible run of the
    # scenario: converge, idempotence, the verifier's fixture plays and the
    # role runs inside the tests (molecule/_harness/callback_plugins/
    # secvirt_runs.py records each run), so a scenario that grows shows its
    # cost.
    if [[ $name == molecule:* ]]; then
      tasks=$(.venv/bin/python tests/harness/steps.py --executions "$PWD/.cache/logs/ansible-${name#molecule:}.tsv")
    fi
    if [ -n "$tasks" ] && [ "$tasks" -gt 0 ]; then
      printf '  %-28s %-14s %4dm%02ds %6d %8.1f\n' "$name" "$status" $((secs / 60)) $((secs % 60)) "$tasks" \
        "$(awk -v s="$secs" -v t="$tasks" 'BEGIN{print s/t}')"
    else
      printf '  %-28s %-14s %4dm%02ds\n' "$name" "$status" $((secs / 60)) $((secs % 60))
    fi
  done <"$SECVIRT_TIMINGS"
  total=$(( $(date +%s) - suite_start ))
  printf '  %-28s %-14s %4dm%02ds\n' total "$1" $((total / 60)) $((total % 60))
  # The machine's speed before the scenarios and after them (speed.py: the
  # seconds a fixed piece of Python work took, lower is faster), so that the
  # total reads against the speed it ran at: the same suite took 40m30s and
  # 52m03s on two days (docs/testing.md).
  printf '  %-28s %s s before the scenarios, %s s after (tests/harness/speed.py; lower is faster)\n' \
    "machine speed" "${speed_before:-?}" "$(.venv/bin/python tests/harness/speed.py 2>/dev/null || echo '?')"
  step_table
  task_table
  failure_excerpts
}

task_table() {
  # The tasks the scenarios' Ansible runs spent their time on, summed over
  # every run of every scenario (secvirt_runs.py's -tasks.tsv files): what
  # to make cheaper next, by task and by module.
  local files=("$PWD"/.cache/logs/ansible-*-tasks.tsv)
  [ -f "${files[0]}" ] || return 0
  printf '\n\033[1mCostliest Ansible tasks\033[0m (every scenario, converge to verify)\n'
  .venv/bin/python tests/harness/steps.py --top-tasks 12 "${files[@]}" | sed 's/^/  /'
}

step_table() {
  # Where each scenario's time went, by molecule step (tests/harness/steps.py):
  # what converging and re-converging cost against the tests themselves, and
  # how much of verify the Ansible runs inside the tests took.
  local name
  printf '\n\033[1mMolecule steps\033[0m (m:ss), and the Ansible runs inside verify\n'
  printf '  %-22s %8s %8s %8s %8s %8s %8s %6s %7s %8s\n' scenario syntax create converge idempot verify destroy \
    runs tasks ansible
  while IFS=$'\t' read -r name _ _; do
    [[ $name == molecule:* ]] || continue
    [ -f "$PWD/.cache/logs/steps-${name#molecule:}.tsv" ] || continue
    printf '  %s\n' "$(.venv/bin/python tests/harness/steps.py --row "${name#molecule:}" \
      "$PWD/.cache/logs/steps-${name#molecule:}.tsv" "$PWD/.cache/logs/ansible-${name#molecule:}.tsv")"
  done <"$SECVIRT_TIMINGS"
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

run() { "$stage" "$@" || { kill "${pids[@]}" 2>/dev/null; summary FAILED; exit 1; }; }

speed_before=$(.venv/bin/python tests/harness/speed.py 2>/dev/null || echo '?')
logs=$PWD/.cache/logs
mkdir -p "$logs"
rm -f "$logs/checks.rc"

checks() {
  # The checks that need no VM: lint, sanity, unit tests. They start at once,
  # beside the image builds, and the last lane takes its first scenario
  # only when they are done (run serially before the scenarios, they kept
  # both cores on one single-threaded job for about 5 minutes). With the
  # images cached the builds take a second, so the checks are that lane's
  # first job as before; on a machine without them (a fresh machine, or one
  # whose cache was wiped) the builds, ~5 minutes on one core, no longer
  # leave the other core idle. A failing check still fails the suite; the
  # scenarios run anyway, so one run reports every failure.
  local failed=0
  "$stage" yamllint .venv/bin/yamllint -s . || failed=1
  "$stage" ansible-lint .venv/bin/ansible-lint || failed=1
  "$stage" ansible-test-sanity tests/harness/sanity.sh || failed=1
  "$stage" unit .venv/bin/pytest -q -p no:cacheprovider tests/unit || failed=1
  echo $failed >"$logs/checks.rc"
  return $failed
}
checks >"$logs/checks.log" 2>&1 &
checks_pid=$!
pids+=("$checks_pid")

run image .venv/bin/python tests/harness/vm.py image
run image-debian13 .venv/bin/python tests/harness/vm.py image --suite trixie

# Molecule scenarios run in SECVIRT_LANES parallel lanes (default 2, one per
# core: with the VMs on both cores, vm.py's use_every_cpu(), the two lanes keep
# both CPUs ~93% busy). Earlier measurements that found the cores half idle
# and a third lane slower were taken while mitogen had pinned every VM to one
# core (docs/testing.md). The scenarios wait in one queue, longest first by
# the minutes below (they only set the order: measured with two lanes busy,
# 2026-12-02, audit/storage/debian13 estimated from runs beside two other
# scenarios; unknown: 10), and a lane that finishes a scenario takes the
# next one from the queue. A fixed split decided up front left one lane idle
# for half an hour while the other still had two scenarios to run (CI at
# 39da57d: libvirt_remote alone took 84 min). debian13 first since it
# boots a second hypervisor and migrates between them (13m51s alone,
# 2026-12-04).
declare -A minutes=([libvirt_remote]=22 [debian13]=30 [audit]=16 [storage]=14 [pki]=12 [vlan_bridges]=10
                    [libvirt_modules]=8 [hypervisor]=10 [guest_policy]=12)
lanes=${SECVIRT_LANES:-2}
queue=$logs/.queue
for s in "$@"; do printf '%s %s\n' "${minutes[$s]:-10}" "$s"; done | sort -rn | cut -d' ' -f2 >"$queue"

next_scenario() {
  # Take the first scenario off the queue (under a lock: lanes take turns).
  {
    flock 8
    head -n 1 "$queue"
    sed -i 1d "$queue"
  } 8>"$logs/.queue-lock"
}

lane() {
  # One lane: scenarios from the queue until it is empty. Each scenario's
  # output goes to its own log, printed whole (under a lock, never
  # interleaved) when it ends. A failed scenario does not stop the lane:
  # one run reports every failure.
  local s rc failed=0
  if [ "$1" = $((lanes - 1)) ]; then
    # checks() runs in the main shell's background, not a child of this
    # lane: its rc file says it is done. Its result is counted once, by the
    # main shell's wait.
    while [ ! -s "$logs/checks.rc" ] && kill -0 "$checks_pid" 2>/dev/null; do sleep 2; done
    { flock 9; cat "$logs/checks.log"; } 9>"$logs/.print-lock"
  fi
  while s=$(next_scenario) && [ -n "$s" ]; do
    printf '\033[1mlane %d: %s\033[0m\n' "$1" "$s" >&2
    # steps.py writes the log and the time each molecule step began
    # (unbuffered, so a step's time is when molecule announced it)
    # SECVIRT_ANSIBLE_RUNS: where every Ansible run of the scenario records
    # its time and tasks (.config/molecule/config.yml enables the callback)
    rm -f "$logs/ansible-$s.tsv" "$logs/ansible-$s-tasks.tsv"
    SECVIRT_ANSIBLE_RUNS=$logs/ansible-$s.tsv PYTHONUNBUFFERED=1 \
      "$stage" "molecule:$s" .venv/bin/molecule test -s "$s" 2>&1 |
      .venv/bin/python tests/harness/steps.py "$logs/molecule-$s.log" "$logs/steps-$s.tsv"
    rc=${PIPESTATUS[0]}
    { flock 9; cat "$logs/molecule-$s.log"; } 9>"$logs/.print-lock"
    [ "$rc" = 0 ] || failed=1
  done
  return $failed
}

printf '\033[1mmolecule queue (longest first): %s\033[0m\n' "$(tr '\n' ' ' <"$queue")" >&2
for ((i = 0; i < lanes; i++)); do
  lane "$i" &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ $failed = 0 ] || { summary FAILED; exit 1; }
summary PASSED
