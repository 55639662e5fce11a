#!/usr/bin/env bash
# Regression guard on the protocol's CPU cost: counts the instructions
# (callgrind's Ir) of one fixed, seeded simulation run (sim-bench, 50 nodes:
# cold start, idle, 50 messages under 5% loss with a crash) and compares the
# total with the figure recorded in tests/perf/sim-instructions.txt.
#
# Instruction counts are repeatable for one binary and one input (two runs
# differ by well under 0.01%), unlike wall time on a shared machine; they
# change with the code, and with the compiler, so the file records the
# rustc version that produced its figure.
#
#   tests/perf/guard.sh            compare; exit 0 within the tolerance, 1 above
#                                  it (or if the run failed), 77 if it cannot
#                                  judge (valgrind missing, another rustc)
#   tests/perf/guard.sh --record   run and rewrite the recorded figure
#
# GUARD_TOLERANCE_PCT (default 5) is how much the count may grow.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
record_file=tests/perf/sim-instructions.txt
tolerance_pct="${GUARD_TOLERANCE_PCT:-5}"
sim_args=(--nodes 50 --messages 50 --settle-secs 10 --idle-secs 5 --seed 1)
skip=77

record=false
case "${1:-}" in
    "") ;;
    --record) record=true ;;
    -h | --help)
        sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "guard: unknown argument $1 (try --help)" >&2
        exit 2
        ;;
esac

if ! command -v valgrind >/dev/null 2>&1; then
    echo "guard: SKIPPED: valgrind is not installed (apt-get install valgrind)"
    exit "$skip"
fi

rustc_version="$(rustc --version)"
echo "guard: building sim-bench (release, $rustc_version)"
cargo build --release --quiet -p rossip-tests --bin sim-bench
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
bin="$target_dir/release/sim-bench"

out="$(mktemp)"
trap 'rm -f "$out" "$out.log"' EXIT
command_line="valgrind --tool=callgrind target/release/sim-bench ${sim_args[*]}"
echo "guard: $command_line"
start=$SECONDS
if ! valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" "${sim_args[@]}" >"$out.log" 2>&1; then
    cat "$out.log" >&2
    echo "guard: FAILED: the simulation run failed (see above)" >&2
    exit 1
fi
measured="$(sed -n 's/^summary: \([0-9]*\)$/\1/p' "$out")"
[ -n "$measured" ] || { echo "guard: FAILED: no instruction total in callgrind's output" >&2; exit 1; }
echo "guard: measured $measured instructions in $((SECONDS - start)) s"

if [ "$record" = true ]; then
    cat >"$record_file" <<RECORD
# Instructions (callgrind Ir, whole process) of one seeded simulation run,
# checked by tests/perf/guard.sh (a rise of more than its tolerance fails).
# Re-record with \`tests/perf/guard.sh --record\` after a change that is
# meant to cost more (or after a compiler upgrade), and say why in the commit.
command: $command_line
recorded: $(date -u +%Y-%m-%d)
rustc: $rustc_version
valgrind: $(valgrind --version)
instructions: $measured
RECORD
    echo "guard: recorded in $record_file"
    exit 0
fi

[ -f "$record_file" ] || { echo "guard: FAILED: no $record_file (run with --record)" >&2; exit 1; }
field() { sed -n "s/^$1: //p" "$record_file"; }
recorded="$(field instructions)"
recorded_rustc="$(field rustc)"
recorded_command="$(field command)"
[ -n "$recorded" ] || { echo "guard: FAILED: no instructions line in $record_file" >&2; exit 1; }
change_pct="$(awk -v m="$measured" -v r="$recorded" 'BEGIN { printf "%+.2f", (m - r) * 100 / r }')"
echo "guard: recorded $recorded ($(field recorded), $recorded_rustc)"
echo "guard: measured $measured ($rustc_version): ${change_pct}%, tolerance +${tolerance_pct}%"

if [ "$recorded_command" != "$command_line" ]; then
    echo "guard: SKIPPED: the recorded figure is of another run ($recorded_command); re-record with --record"
    exit "$skip"
fi
# Another compiler changes the count by itself, up or down: a comparison
# could neither blame nor clear the code, so it is shown and not judged.
if [ "$recorded_rustc" != "$rustc_version" ]; then
    echo "guard: SKIPPED: recorded with $recorded_rustc, this is $rustc_version; the figures are not comparable (re-record with --record on this toolchain)"
    exit "$skip"
fi
if awk -v m="$measured" -v r="$recorded" -v t="$tolerance_pct" 'BEGIN { exit !(m > r * (1 + t / 100)) }'; then
    echo "guard: FAILED: the simulation costs ${change_pct}% more instructions than recorded (tolerance +${tolerance_pct}%)" >&2
    exit 1
fi
echo "guard: ok"
