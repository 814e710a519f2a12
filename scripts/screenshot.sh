#!/usr/bin/env bash
# Makes docs/img/explorer.png, the README's picture of the explorer: runs the
# real binary on the embedded default (`semcon`: the shipped checkpoints on
# the builtin Fashion-MNIST test set) in a private tmux server at 160x40,
# waits until the numbers are in, captures the pane with its colours, turns
# the ANSI text into HTML (a small converter below, no packages) and renders
# that with headless Chromium in DejaVu Sans Mono.
#
# Usage: scripts/screenshot.sh [SEMCON_BINARY]
#   The binary: the argument, else $SEMCON, else target/release/semcon.
#   OUT=path (default docs/img/explorer.png); WAIT=seconds to wait at most
#   for the numbers (default 600); SETTLE=seconds to wait once every number
#   is in (default 1); COLS/ROWS (default 160x40); FONT_PX (default 13);
#   KEYS: tmux keys sent once the explorer is up (default: j x12, which
#   selects hue 0.1, where the standard model breaks and the others do not);
#   SEMCON_ARGS="--samples 500" extra arguments for semcon.
# Needs: tmux, python3, chromium and the DejaVu fonts (Debian: apt-get install
# -y tmux chromium fonts-dejavu-core).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-${SEMCON:-target/release/semcon}}
OUT=${OUT:-docs/img/explorer.png}
WAIT=${WAIT:-600}
SETTLE=${SETTLE:-1}
COLS=${COLS:-160}
ROWS=${ROWS:-40}
FONT_PX=${FONT_PX:-13}
read -r -a EXTRA <<<"${SEMCON_ARGS:-}"
read -r -a KEYLIST <<<"${KEYS-j j j j j j j j j j j j}"

[ -x "$BIN" ] || { echo "screenshot: no semcon binary at $BIN (cargo build --release, or pass its path)" >&2; exit 1; }
for t in tmux python3; do
    command -v "$t" >/dev/null || { echo "screenshot: $t is required" >&2; exit 1; }
done
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$CHROME" ] || { echo "screenshot: chromium is required (apt-get install -y chromium)" >&2; exit 1; }

BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
SOCK=semcon-shot-$$
TMP=$(mktemp -d /tmp/semcon-shot.XXXXXX)
cleanup() { tmux -L "$SOCK" kill-server 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

printf -v CMD '%q ' env TERM=xterm-256color COLORTERM=truecolor "$BIN" "${EXTRA[@]}"
tmux -L "$SOCK" -f /dev/null new-session -d -s shot -x "$COLS" -y "$ROWS" "$CMD"
cap() { tmux -L "$SOCK" capture-pane -p -t shot "$@" 2>/dev/null || true; }

# Ready when every panel of the current view has its numbers: the PGD table
# (the last of them the explorer computes: clean, levels, k*, then PGD) has an
# accuracy for every model and eps. Then, for up to 10 s, a frame without a
# partial value ("…") of the prefetch that follows.
pgd_done() {
    python3 -c '
import sys
lines = sys.stdin.read().split("\n")
for i, l in enumerate(lines):
    c = l.find("Adversarial accuracy")
    if c < 2:
        continue
    x = c - 2  # the column of the panel'"'"'s left border
    rows = []
    for r in lines[i + 1:]:
        if len(r) <= x or r[x] != "\u2502":
            break
        seg = r[x + 1:]
        end = seg.find("\u2502")
        rows.append(seg[:end] if end >= 0 else seg)
    if len(rows) < 2:
        sys.exit(1)
    cols = rows[0].count("\u03b5") + 1
    sys.exit(0 if all(r.count("%") == cols for r in rows[1:] if r.strip()) else 1)
sys.exit(1)
'
}
wait_ready() {
    local end=$(( $(date +%s) + WAIT ))
    until cap | pgd_done; do
        if [ "$(date +%s)" -gt "$end" ]; then
            echo "screenshot: numbers still coming after ${WAIT}s; taking the picture anyway" >&2
            return
        fi
        sleep 1
    done
    local calm=$(( $(date +%s) + 10 ))
    while cap | grep -q '…' && [ "$(date +%s)" -lt "$calm" ]; do sleep 0.2; done
}
# The first frame, then the keys (before the numbers, so that they are
# computed for the view they lead to), then the numbers.
up=$(( $(date +%s) + 60 ))
until cap | grep -q 'Perturbations'; do
    if ! tmux -L "$SOCK" has-session -t shot 2>/dev/null || [ "$(date +%s)" -gt "$up" ]; then
        echo "screenshot: the explorer did not come up" >&2; cap >&2; exit 1
    fi
    sleep 0.2
done
if [ ${#KEYLIST[@]} -gt 0 ]; then
    tmux -L "$SOCK" send-keys -t shot "${KEYLIST[@]}"
fi
wait_ready
sleep "$SETTLE"
cap -e >"$TMP/screen.ansi"

SIZE=$(python3 - "$TMP/screen.ansi" "$TMP/screen.html" "$FONT_PX" <<'PY'
import html, re, sys

src, dst, px = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(src, encoding="utf-8", errors="replace").read().rstrip("\n").split("\n")

BASE = ["#000000", "#cd0000", "#00cd00", "#cdcd00", "#0000ee", "#cd00cd", "#00cdcd", "#e5e5e5",
        "#7f7f7f", "#ff0000", "#00ff00", "#ffff00", "#5c5cff", "#ff00ff", "#00ffff", "#ffffff"]
FG, BG = "#d0d0d0", "#101418"
SGR = re.compile(r"\x1b\[([0-9;:]*)m")

def c256(n):
    if n < 16:
        return BASE[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (steps[n // 36], steps[n // 6 % 6], steps[n % 6])
    v = 8 + 10 * (n - 232)
    return "#%02x%02x%02x" % (v, v, v)

state = {}

def sgr(params):
    p = [int(x) if x else 0 for x in re.split("[;:]", params)] if params else [0]
    i = 0
    while i < len(p):
        c = p[i]
        if c == 0:
            state.clear()
        elif c in (1, 2, 3, 4, 7):
            state[c] = True
        elif c == 22:
            state.pop(1, None); state.pop(2, None)
        elif c in (23, 24, 27):
            state.pop({23: 3, 24: 4, 27: 7}[c], None)
        elif 30 <= c <= 37:
            state["fg"] = BASE[c - 30]
        elif 90 <= c <= 97:
            state["fg"] = BASE[c - 82]
        elif 40 <= c <= 47:
            state["bg"] = BASE[c - 40]
        elif 100 <= c <= 107:
            state["bg"] = BASE[c - 92]
        elif c == 39:
            state.pop("fg", None)
        elif c == 49:
            state.pop("bg", None)
        elif c in (38, 48):
            key = "fg" if c == 38 else "bg"
            if i + 2 < len(p) and p[i + 1] == 5:
                state[key] = c256(p[i + 2]); i += 2
            elif i + 4 < len(p) and p[i + 1] == 2:
                state[key] = "#%02x%02x%02x" % tuple(p[i + 2:i + 5]); i += 4
        i += 1

def style():
    fg, bg = state.get("fg"), state.get("bg")
    if state.get(7):
        fg, bg = bg or BG, fg or FG
    s = []
    if fg: s.append("color:" + fg)
    if bg: s.append("background:" + bg)
    if state.get(1): s.append("font-weight:bold")
    if state.get(2): s.append("opacity:.7")
    if state.get(3): s.append("font-style:italic")
    if state.get(4): s.append("text-decoration:underline")
    return ";".join(s)

rows = []
for line in lines:
    parts, pos = [], 0
    for m in SGR.finditer(line):
        if line[pos:m.start()]:
            parts.append((style(), line[pos:m.start()]))
        sgr(m.group(1))
        pos = m.end()
    if line[pos:]:
        parts.append((style(), line[pos:]))
    rows.append("".join(
        f'<span style="{s}">{html.escape(t)}</span>' if s else html.escape(t) for s, t in parts
    ) or "&nbsp;")

# DejaVu Sans Mono: advance 0.602 em, ascent + descent 1.164 em. The line
# height is that rounded down to whole pixels, so that the half blocks of the
# sample images and the cell backgrounds tile without gaps.
line_px = int(px * 1.1641)
pad_x, pad_y = 8, 6
cols = max(len(SGR.sub("", l)) for l in lines)
page = f"""<!doctype html><meta charset="utf-8"><style>
html, body {{ margin: 0; background: {BG}; }}
#t {{ padding: {pad_y}px {pad_x}px; color: {FG}; background: {BG};
      font: {px}px/{line_px}px 'DejaVu Sans Mono', monospace; white-space: pre; }}
#t div {{ height: {line_px}px; }}
</style><div id="t">{"".join(f"<div>{r}</div>" for r in rows)}</div>"""
open(dst, "w", encoding="utf-8").write(page)
print(f"{int(cols * px * 0.6021 + 0.999) + 2 * pad_x},{len(rows) * line_px + 2 * pad_y}")
PY
)

mkdir -p "$(dirname "$OUT")"
"$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --force-device-scale-factor=1 --window-size="$SIZE" \
    --screenshot="$TMP/shot.png" "file://$TMP/screen.html" >/dev/null 2>&1 || true
[ -s "$TMP/shot.png" ] || { echo "screenshot: chromium wrote no image" >&2; exit 1; }
cp "$TMP/shot.png" "$OUT"
echo "screenshot: wrote $OUT ($(stat -c %s "$OUT") bytes, ${SIZE/,/x} px)"
