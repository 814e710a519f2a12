#!/usr/bin/env bash
# Checks the CUDA build (scripts/build_cuda.sh) on a machine WITHOUT the NVIDIA
# driver, i.e. what a CPU user or a container started without the GPU sees:
#   - no CUDA library is a loader dependency (the binary starts at all);
#   - `--device auto` says in one line why there is no GPU and gives the same
#     report as the CPU build (byte for byte: same code on the CPU);
#   - `--device cuda` fails with that reason (exit 1), no panic;
#   - the explorer (tmux) starts on the CPU and shows the reason in its message line.
#   scripts/cuda_fallback_check.sh      (SEMCON=... for another CUDA binary)
set -uo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .gpu/bin/semcon ] && [ -f .gpuc/semcon.xz ]; then
  mkdir -p .gpu/bin && xz -dc .gpuc/semcon.xz > .gpu/bin/semcon && chmod +x .gpu/bin/semcon
fi
SEMCON=${SEMCON:-.gpu/bin/semcon}
test -x "$SEMCON" || { echo "no $SEMCON (scripts/build_cuda.sh builds it)"; exit 1; }
if ldconfig -p | grep -q 'libcuda\.so'; then
  echo "this machine has libcuda (the NVIDIA driver): run this check where it is missing"; exit 1
fi
cargo build --release -q --bin semcon || exit 1
CPU=target/release/semcon
T=$(mktemp -d)
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

deps=$(readelf -d "$SEMCON" | grep NEEDED)
check "no CUDA library among the loader dependencies" \
  '! grep -qE "cuda|cublas|curand|nvrtc|cudnn" <<<"$deps"'

ARGS=(eval --samples 300 --perturb all --pgd 8/255 --kstar --format json)
(cd "$T" && env -u LD_LIBRARY_PATH "$OLDPWD/$SEMCON" "${ARGS[@]}" --device auto > auto.json 2> auto.err)
rc=$?
(cd "$T" && "$OLDPWD/$CPU" "${ARGS[@]}" --device cpu > cpu.json 2> cpu.err)
echo "  auto's notice: $(cat "$T/auto.err")"
check "--device auto exits 0" '[ $rc = 0 ]'
check "--device auto prints one notice line naming the driver" \
  '[ "$(wc -l < "$T/auto.err")" = 1 ] && grep -q "^notice: CUDA unavailable: cannot load the NVIDIA driver (libcuda.so).*running on the CPU" "$T/auto.err"'
check "--device auto report identical to the CPU build's" 'cmp -s "$T/auto.json" "$T/cpu.json"'

env -u LD_LIBRARY_PATH "$SEMCON" eval --samples 10 --device cuda > "$T/cuda.out" 2> "$T/cuda.err"
rc=$?
echo "  cuda's error: $(cat "$T/cuda.err")"
check "--device cuda exits 1 with the reason, no panic" \
  '[ $rc = 1 ] && grep -q "device .cuda.: CUDA unavailable" "$T/cuda.err" && ! grep -qi panick "$T/cuda.err"'

if command -v tmux > /dev/null; then
  S=semcon-fallback-$$
  tmux new-session -d -s $S -x 120 -y 36 "env -u LD_LIBRARY_PATH $PWD/$SEMCON; echo EXIT=\$?; sleep 30"
  sleep 4
  tmux capture-pane -p -t $S > "$T/tui.txt"
  tmux send-keys -t $S q
  sleep 1
  tmux capture-pane -p -t $S > "$T/tui_after.txt"
  tmux kill-session -t $S 2> /dev/null
  check "explorer on the CPU, reason in its message line" \
    'grep -q "cpu (" "$T/tui.txt" && grep -q "CUDA unavailable" "$T/tui.txt"'
  check "explorer quits cleanly (exit 0)" 'grep -q "EXIT=0" "$T/tui_after.txt"'
  sed -n '1,3p;$p' "$T/tui.txt" | cut -c1-120
else
  echo "skip explorer check (no tmux)"
fi
rm -rf "$T"
[ $fail = 0 ] && echo "CUDA FALLBACK CHECK PASSED" || echo "CUDA FALLBACK CHECK FAILED"
exit $fail
