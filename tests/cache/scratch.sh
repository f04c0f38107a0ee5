# Sourced by the check scripts (tests/cache/run_cache_checks.sh, tests/remote_exec/run_remote_exec_checks.sh):
# a scratch directory for one run, and an EXIT trap that stops by PID everything the run started
# there (servers, Bazel servers) and removes the directory.
#
#   scratch_dir NAME KEEP_VARIABLE   sets $work to a new directory /var/tmp/NAME.XXXXXX (or under
#                                    $TMPDIR); when the variable named KEEP_VARIABLE is 1, the
#                                    directory is kept for a post-mortem.
# The driver writes its servers' PID files to $work/pids/; Bazel writes its own under
# $work/output-roots/.

stop_pid() {  # stop_pid PID: only if it is still one of ours (its command line names $work)
  local pid=$1
  local cmdline
  # Read first, then match: `tr | grep -q` under pipefail fails with tr's SIGPIPE when grep matches.
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 0
  [[ "$cmdline" == *"$work"* ]] || return 0
  kill "$pid" 2>/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
  kill -9 "$pid" 2>/dev/null
}

scratch_cleanup() {
  local f
  for f in "$work"/pids/*.pid "$work"/output-roots/*/*/server/server.pid.txt; do
    [ -f "$f" ] && stop_pid "$(cat "$f")"
  done
  if [ "${!scratch_keep:-0}" = 1 ]; then
    echo "$scratch_name: kept $work"
  else
    chmod -R u+w "$work" 2>/dev/null
    rm -rf "$work"
  fi
}

scratch_dir() {
  scratch_name=$1
  scratch_keep=$2
  work=$(mktemp -d "${TMPDIR:-/var/tmp}/$scratch_name.XXXXXX")
  trap scratch_cleanup EXIT
  trap 'exit 143' TERM INT
}
