#!/usr/bin/env bash
# Speed of the explorer (a measurement, not a test). Runs the real binary in a
# private tmux server with SEMCON_TUI_TRACE and reports:
#   1. launch -> first numbers on screen (an accuracy such as 91.2% or the
#      partial 93.8%…, as seen by polling the tmux pane: what a user sees;
#      the headline, median of RUNS launches), beside the in-process trace's
#      figure, and launch -> first frame                      (target <= 1 s)
#   2. key press -> redraw while a job runs                  (target <= 50 ms)
#   3. frame render time                                      (target <= 5 ms)
# Usage: scripts/tui_bench.sh [semcon arguments...]
#   Without arguments: the embedded default (`semcon`, i.e. checkpoints/*.safetensors
#   on builtin data, 2000 samples); when no checkpoints are shipped yet, the
#   fixture model on builtin:fashion-mnist instead (said so in the output).
#   PROFILE=release builds and runs the release binary (default: debug, whose
#   dependencies are optimised). KEYS=N key presses (default 30). RUNS=N
#   launches (default 3). The binary is taken from CARGO_TARGET_DIR when set
#   (CARGO_BUILD_JOBS=1 builds with one job).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v tmux >/dev/null || { echo "tui_bench: tmux is required (apt-get install -y tmux)" >&2; exit 1; }
PROFILE=${PROFILE:-debug}
KEYS=${KEYS:-30}
RUNS=${RUNS:-3}
if [ "$PROFILE" = release ]; then cargo build -q --release --bin semcon; else cargo build -q --bin semcon; fi
BIN=${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE/semcon

ARGS=("$@")
WHAT="semcon ${ARGS[*]:-}"
if [ ${#ARGS[@]} -eq 0 ]; then
    if compgen -G "checkpoints/*.safetensors" >/dev/null; then
        WHAT="semcon (embedded default: $(ls checkpoints/*.safetensors | xargs -n1 basename | tr '\n' ' '))"
    else
        ARGS=(explore --checkpoint tests/fixtures/models/resnet18_cifar.safetensors --dataset builtin:fashion-mnist)
        WHAT="semcon ${ARGS[*]}  [no shipped checkpoints yet: fixture model, default 2000 samples]"
    fi
fi

SOCK=semcon-bench-$$
TRACE=$(mktemp /tmp/semcon-trace.XXXXXX)
cleanup() { tmux -L "$SOCK" kill-server 2>/dev/null || true; rm -f "$TRACE"; }
trap cleanup EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
cap() { tmux -L "$SOCK" capture-pane -p -t b 2>/dev/null || true; }
# line number of the selection marker in the perturbation list
sel() { cap | cut -c1-30 | grep -n '▶' | head -1 | cut -d: -f1; }

printf -v CMD '%q ' env SEMCON_TUI_TRACE="$TRACE" COLORTERM=truecolor "$BIN" "${ARGS[@]}"

wait_for() { # pattern timeout_s
    local end=$(( $(now_ms) + $2 * 1000 ))
    while ! cap | grep -Eq "$1"; do
        [ "$(now_ms)" -gt "$end" ] && { echo "tui_bench: timed out waiting for /$1/" >&2; cap >&2; exit 1; }
        sleep 0.01
    done
}
trace_ms() { awk -v k="$1" '$1 == k {v = $2} END {print v}' "$TRACE"; } # the last run's

# 1. Launches: each in a fresh tmux server; the last one stays for the keys.
p_frame=(); p_numbers=(); t_loaded=(); t_frame=(); t_numbers=()
for run in $(seq 1 "$RUNS"); do
    : > "$TRACE"
    t0=$(now_ms)
    tmux -L "$SOCK" -f /dev/null new-session -d -s b -x 160 -y 45 "$CMD; sleep 1000"
    wait_for 'Perturbations' 60
    p_frame+=( $(( $(now_ms) - t0 )) )
    wait_for '[0-9]\.[0-9]%' 600        # an accuracy like 91.2% or 93.8%… (progress shows …40%)
    p_numbers+=( $(( $(now_ms) - t0 )) )
    sleep 0.3 # the trace line is written right after the frame
    t_loaded+=( "$(trace_ms loaded_ms)" ); t_frame+=( "$(trace_ms first_frame_ms)" )
    t_numbers+=( "$(trace_ms first_numbers_ms)" )
    if [ "$run" -lt "$RUNS" ]; then
        tmux -L "$SOCK" send-keys -t b q; sleep 0.5
        tmux -L "$SOCK" kill-server 2>/dev/null || true; sleep 0.5
    fi
done
med() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
all() { local IFS=/; echo "$*"; }

# Key presses while a job runs (the status line says "computing").
wait_for 'computing' 60
ext=()
for i in $(seq 1 "$KEYS"); do
    k=j; [ $((i % 2)) -eq 0 ] && k=k
    before=$(sel)
    a=$(date +%s%N)
    tmux -L "$SOCK" send-keys -t b "$k"
    end=$(( $(now_ms) + 5000 ))
    while [ "$(sel)" = "$before" ] && [ "$(now_ms)" -lt "$end" ]; do :; done
    b=$(date +%s%N)
    ext+=( $(( (b - a) / 1000 )) )
    sleep 0.15
done
still_running=$(cap | grep -c computing || true)
status_line=$(cap | grep -E '[│|] *[0-9]+ samples' | head -1 | sed 's/^ *//')
tmux -L "$SOCK" send-keys -t b q
sleep 1

stats() { # values (µs) on stdin -> "n median p95 max" in ms
    sort -n | awk '{v[NR]=$1} END {if (NR==0) {print "n=0"; exit}
        i95=int(NR*0.95+0.999); if (i95>NR) i95=NR; if (i95<1) i95=1
        printf "n=%d median=%.2f ms p95=%.2f ms max=%.2f ms\n", NR, v[int((NR+1)/2)]/1000, v[i95]/1000, v[NR]/1000}'
}
echo "semcon explorer speed — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), profile $PROFILE"
echo "run: $WHAT"
echo "status line: $status_line"
echo
echo "1. launch -> first numbers on screen (tmux poll): median $(med "${p_numbers[@]}") ms ($(all "${p_numbers[@]}") ms)   target <= 1000 ms"
echo "   same, in-process trace (from explore()):      median $(med "${t_numbers[@]}") ms ($(all "${t_numbers[@]}") ms)"
echo "   launch -> first frame (tmux poll):             median $(med "${p_frame[@]}") ms ($(all "${p_frame[@]}") ms); trace $(all "${t_frame[@]}") ms"
echo "   checkpoints and data loaded (trace):           $(all "${t_loaded[@]}") ms"
echo "2. key -> redraw, in process (trace):  $(awk '/^key_us/ {print $2}' "$TRACE" | stats)   target <= 50 ms"
echo "   key -> screen, via tmux (external): $(printf '%s\n' "${ext[@]}" | stats)"
echo "   (a job was running during the key presses: $([ "$still_running" -gt 0 ] && echo yes || echo 'not at the end'))"
echo "3. frame render (trace):               $(awk '/^render_us/ {print $2}' "$TRACE" | stats)   target <= 5 ms"
echo "   frame render + write (trace):       $(awk '/^draw_us/ {print $2}' "$TRACE" | stats)"
