#!/usr/bin/env bash
# stage.sh NAME CMD...: run one stage of the suite and record its wall time.
set -uo pipefail
name=$1; shift
timings=${SECVIRT_TIMINGS:-.cache/timings.tsv}
mkdir -p "$(dirname "$timings")"
printf '\n\033[1m==> %s\033[0m\n' "$name" >&2
start=$(date +%s)
"$@"
rc=$?
secs=$(( $(date +%s) - start ))
status=$([ $rc = 0 ] && echo ok || echo "FAILED(rc=$rc)")
printf '%s\t%s\t%d\n' "$name" "$status" "$secs" >>"$timings"
printf '\033[1m<== %s: %s in %dm%02ds\033[0m\n' "$name" "$status" $((secs / 60)) $((secs % 60)) >&2
exit $rc
