#!/usr/bin/env bash
# Smoke run of the README: every shell block of README.md (indented, or fenced as sh, bash,
# shell or without a language), taken from the README text itself, run line by line from
# the repository root, in README order. A line fails the run when it exits non-zero.
#
# A command that prints a server's ready line (`listening on http://…` from bitwrk-exchange,
# `bitwrk-host ready …` from bitwrk-host run) keeps running in the background until the end
# of its block, then gets SIGTERM. Nothing is typed: a block that needs a person is marked.
#
# Markers: HTML comments right before a block (invisible on the rendered page), one each:
#   <!-- smoke: skip (reason) -->           the block is not run
#   <!-- smoke: setup COMMAND -->           run before the block (e.g. make an input file)
#   <!-- smoke: cleanup COMMAND -->         run after the block, and on exit
#   <!-- smoke: sub TEXT => REPLACEMENT --> the block is run with TEXT replaced, for a
#                                           placeholder ("ADDRESS") or a shorter run that
#                                           the README documents ("--rounds 5")
#
# Usage: scripts/readme-smoke.sh [README.md]. The binaries of `cargo build --release` are on
# PATH (target/release); bitwrk-host and bitwrk-exchange keep their data in a scratch dir
# instead of ~/.bitwrk-host and ~/.bitwrk-exchange (BITWRK_DATA_DIR,
# BITWRK_EXCHANGE_DATA_DIR); flags given in the README still win.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
README=${1:-README.md}

# A README command's bound: a cold `cargo build --release` of the host takes ~10 min on 2
# cores and the dist exchange (fat LTO) ~5 min; an hour means a hang, not a slow machine.
COMMAND_TIMEOUT_S=3600
# A stopped server's bound to exit after SIGTERM, before SIGKILL.
STOP_TIMEOUT_S=20
# The ready lines servers print on stdout (the same lines the tests read).
READY_RE='^(listening on http://|bitwrk-host ready )'

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/readme-smoke.XXXXXX")
export BITWRK_DATA_DIR=$SCRATCH/bitwrk-host
export BITWRK_EXCHANGE_DATA_DIR=$SCRATCH/bitwrk-exchange
export PATH="${CARGO_TARGET_DIR:-$ROOT/target}/release:$PATH"
export CARGO_TERM_COLOR=never

servers=()
server_logs=()
cleanups=()

stop_servers() {
    local pid
    for pid in "${servers[@]}"; do
        # Each server runs in its own process group (setsid): the group goes.
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for pid in "${servers[@]}"; do
        local end=$((SECONDS + STOP_TIMEOUT_S))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    local log
    for log in "${server_logs[@]}"; do
        echo "smoke: --- last lines of the server $log ---"
        tail -n 15 "$log"
    done
    servers=()
    server_logs=()
}

run_cleanups() {
    local c
    for c in "${cleanups[@]}"; do
        bash -c "$c" || echo "smoke: cleanup failed: $c" >&2
    done
    cleanups=()
}

on_exit() {
    local rc=$?
    stop_servers
    run_cleanups
    rm -rf "$SCRATCH"
    exit "$rc"
}
trap on_exit EXIT

fail() {
    echo "smoke: FAILED: $*" >&2
    exit 1
}

# Run one README line: to its end, or until it prints a ready line (then it is a server).
run_line() {
    local where=$1 line=$2 n=$3
    local out="$SCRATCH/cmd-$n.log"
    echo "smoke: $where: \$ $line"
    : >"$out"
    setsid bash -c "$line" >"$out" 2>&1 </dev/null &
    local pid=$!
    local end=$((SECONDS + COMMAND_TIMEOUT_S))
    while kill -0 "$pid" 2>/dev/null; do
        if grep -qE "$READY_RE" "$out"; then
            servers+=("$pid")
            server_logs+=("$out")
            echo "smoke: server up: $(grep -m1 -E "$READY_RE" "$out")"
            return 0
        fi
        if ((SECONDS > end)); then
            kill -KILL -- "-$pid" 2>/dev/null || true
            cat "$out"
            fail "$where: still running after ${COMMAND_TIMEOUT_S}s: $line"
        fi
        sleep 0.2
    done
    local rc=0
    wait "$pid" || rc=$?
    cat "$out"
    ((rc == 0)) || fail "$where: exit status $rc: $line"
}

# The README's blocks as records: "B <start line>", "D <directive>", "L <line no> <text>".
extract() {
    awk '
        function flush() { pending = "" }
        /^<!-- smoke: .* -->[ \t]*$/ {
            d = $0; sub(/^<!-- smoke: /, "", d); sub(/ -->[ \t]*$/, "", d)
            directives = directives "D " d "\n"; next
        }
        infence {
            if ($0 ~ /^```/) { infence = 0; next }
            if (shell) print "L " NR " " $0
            next
        }
        /^```/ {
            lang = $0; sub(/^```[ \t]*/, "", lang); sub(/[ \t].*$/, "", lang)
            shell = (lang == "" || lang == "sh" || lang == "bash" || lang == "shell")
            infence = 1
            if (shell) { print "B " NR; printf "%s", directives }
            directives = ""; inindent = 0; prevblank = 0; next
        }
        /^    / && (inindent || prevblank) {
            if (!inindent) { print "B " NR; printf "%s", directives; directives = "" }
            inindent = 1; prevblank = 0
            line = $0; sub(/^    /, "", line); print "L " NR " " line; next
        }
        /^[ \t]*$/ { prevblank = 1; next }
        { inindent = 0; prevblank = 0; if ($0 !~ /^<!--/) directives = "" }
    ' "$1"
}

run_block() {
    local start=$1
    shift
    local skip="" subs_from=() subs_to=() setups=() blk_cleanups=() lines=() nums=()
    local rec
    for rec in "$@"; do
        case "$rec" in
        "D skip"*) skip=${rec#D skip} ;;
        "D setup "*) setups+=("${rec#D setup }") ;;
        "D cleanup "*) blk_cleanups+=("${rec#D cleanup }") ;;
        "D sub "*)
            local s=${rec#D sub }
            [[ $s == *" => "* ]] || fail "$README:$start: write <!-- smoke: sub TEXT => REPLACEMENT -->"
            subs_from+=("${s%% => *}")
            subs_to+=("${s#* => }")
            ;;
        "D "*) fail "$README:$start: unknown smoke marker: ${rec#D }" ;;
        "L "*)
            local rest=${rec#L }
            nums+=("${rest%% *}")
            lines+=("${rest#* }")
            ;;
        esac
    done
    if [[ -n $skip ]]; then
        echo "smoke: $README:$start: block skipped:$skip"
        return 0
    fi
    cleanups+=("${blk_cleanups[@]}")
    local c
    for c in "${setups[@]}"; do
        echo "smoke: setup: $c"
        bash -c "$c" || fail "$README:$start: setup failed: $c"
    done
    local i j line joined=""
    for i in "${!lines[@]}"; do
        line=${lines[$i]}
        # A line ending in a backslash continues on the next.
        if [[ -n $joined ]]; then line="$joined $line"; joined=""; fi
        if [[ $line == *\\ ]]; then joined=${line%\\}; continue; fi
        [[ -z ${line// /} || $line =~ ^[[:space:]]*# ]] && continue
        for j in "${!subs_from[@]}"; do
            line=${line//"${subs_from[$j]}"/"${subs_to[$j]}"}
        done
        run_line "$README:${nums[$i]}" "$line" "${nums[$i]}"
    done
    stop_servers
    run_cleanups
}

[[ -f $README ]] || fail "no $README"
block=()
start=""
while IFS= read -r rec; do
    if [[ $rec == "B "* ]]; then
        if [[ -n $start ]]; then run_block "$start" "${block[@]}"; fi
        start=${rec#B }
        block=()
    else
        block+=("$rec")
    fi
done < <(extract "$README")
if [[ -n $start ]]; then run_block "$start" "${block[@]}"; fi
echo "smoke: every block of $README ran"
