#!/usr/bin/env bash
# End-to-end test of `moecl chat` through a pseudo-terminal (tmux): history, Ctrl-C stopping an
# answer (and doing nothing harmful at the prompt), /reset and /exit.
#
# Usage: tests/cli/chat_tmux.sh [MOECL_BIN] [extra chat options...]
# Uses the built-in default model unless the options say -m DIR. Exit status 0 on success, 1 on
# a failed check (the pane's content is printed), 77 when tmux is missing.
set -uo pipefail
bin="${1:-${MOECL_BIN:-build/moecl}}"
shift || true
command -v tmux >/dev/null || { echo "chat_tmux: tmux not installed"; exit 77; }
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
sock="moecl-chat-test-$$"
log="$(mktemp)"
cleanup() { tmux -L "$sock" kill-server 2>/dev/null; rm -f "$log"; }
trap cleanup EXIT

pane() { tmux -L "$sock" capture-pane -p -J -S -5000 -t chat 2>/dev/null; }
fail() {
    echo "chat_tmux: FAIL: $*"
    echo "----- pane -----"
    pane | grep -v '^$' | tail -40
    exit 1
}
# wait_for PATTERN COUNT TIMEOUT: until the pane shows PATTERN (fixed string) COUNT times.
wait_for() {
    local pat="$1" count="$2" timeout="$3" t=0
    while [ "$t" -lt $((timeout * 10)) ]; do
        [ "$(pane | grep -cF -- "$pat")" -ge "$count" ] && return 0
        sleep 0.1
        t=$((t + 1))
    done
    fail "timed out after ${timeout}s waiting for '$pat' x$count"
}
send() { tmux -L "$sock" send-keys -t chat "$@"; }
# prompt_tokens N: the prompt token count of the N-th stats line.
prompt_tokens() { pane | grep -o 'prompt: [0-9]* tokens' | sed -n "${1}p" | grep -o '[0-9]*'; }

tmux -L "$sock" new-session -d -s chat -x 220 -y 50 \
    "\"$bin\" chat --stats --max-tokens 400 $*; echo CHAT-EXITED rc=\$?; sleep 60"
wait_for ">> " 1 120

# Turn 1: Ctrl-C stops the answer; the program stays and prompts again.
send "What is 2 + 2?" Enter
wait_for "What is 2 + 2?" 1 10
sleep 1
send C-c
wait_for "[interrupted]" 1 60
wait_for "prompt: " 1 10
wait_for ">> " 2 10
n1="$(prompt_tokens 1)"

# Ctrl-C at the prompt: a fresh prompt, not an exit.
send C-c
wait_for ">> " 3 10
pane | grep -q "CHAT-EXITED" && fail "Ctrl-C at the prompt ended the program"

# Turn 2: the history makes the prompt longer than turn 1's.
send "And 3 + 3?" Enter
sleep 1
send C-c
wait_for "[interrupted]" 2 60
wait_for "prompt: " 2 10
n2="$(prompt_tokens 2)"
[ -n "$n1" ] && [ -n "$n2" ] || fail "no prompt token counts ($n1, $n2)"
[ "$n2" -gt "$n1" ] || fail "turn 2's prompt ($n2 tokens) is not longer than turn 1's ($n1)"

# /reset: the same question gives turn 1's prompt again.
send "/reset" Enter
wait_for "[history cleared]" 1 10
send "What is 2 + 2?" Enter
sleep 1
send C-c
wait_for "[interrupted]" 3 60
wait_for "prompt: " 3 10
n3="$(prompt_tokens 3)"
[ "$n3" = "$n1" ] || fail "after /reset the prompt has $n3 tokens, want $n1"

# /exit ends the program with status 0.
wait_for ">> " 5 10
send "/exit" Enter
wait_for "CHAT-EXITED rc=0" 1 20
echo "chat_tmux: ok (prompt tokens: turn 1 $n1, turn 2 $n2, after /reset $n3)"
