#!/usr/bin/env bash
# The README's first command on a machine that has nothing yet. Builds a minimal Debian root
# (`debootstrap --variant=minbase`) from the apt mirror this machine uses, gives it only what a fresh
# machine of this kind has to reach the registries (DNS, the TLS trust store, apt's sources and
# Acquire settings, pip's configuration and PIP_* environment), clones the checkout's committed files
# into /root/rules_ota, and runs there, as root, the first line of README.md's first ```sh block
# exactly as written. Then bazel-bin/release/incremental_ota.zip must exist and ota_inspect must read it.
#
# Prints `fresh machine: README build ok in N s (...)` or `fresh machine: FAILED: <what failed>` on
# stdout and exits 0 or 1. Needs root (debootstrap, chroot, mounts); installs debootstrap if missing.
# Whatever it mounts, starts or writes is removed on every exit, failure and signal included.
#
# Usage: .ci/fresh_machine.sh [SUITE]   SUITE: bookworm (the default) or another Debian codename the
# same mirror serves; .ci/run checks bookworm and trixie.
set -uo pipefail
checkout=$(cd "$(dirname "$0")/.." && pwd)
suite=${1:-bookworm}
work=
root=
log=
step=  # process group of the long step now running (debootstrap, the README command, ota_inspect)
step_started=$(date +%s)
# The script's own stdout and stderr, for what the traps print: a trap runs inside the redirections of
# the command it interrupted (a step's `>"$log" 2>&1`).
exec 3>&1 4>&2

fail() {  # fail WHAT: the tail of the step's log, then the verdict line; exit 1 (the trap cleans up)
  if [ -n "$log" ] && [ -s "$log" ]; then
    echo "--- last lines of the fresh machine's log:" >&2
    tail -n 40 "$log" >&2
  fi
  echo "fresh machine: FAILED: $*"
  exit 1
}

reason() {  # for the verdict: the log's first Bazel error, else apt's, else its last non-empty line
  awk '/^ERROR: / && !bazel { bazel = $0 } /^E: / && !apt { apt = $0 } NF { last = $0 }
       END { print bazel ? bazel : apt ? apt : last }' "$log"
}

stop_chroot_processes() {  # every process whose root is the chroot (Bazel's server, a daemon apt started)
  local proc pids=() pid
  for proc in /proc/[0-9]*; do
    [ "$(readlink "$proc/root" 2>/dev/null)" = "$root" ] && pids+=("${proc#/proc/}")
  done
  [ ${#pids[@]} -eq 0 ] && return 0
  kill "${pids[@]}" 2>/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && return 0
    sleep 1
  done
  kill -9 "${pids[@]}" 2>/dev/null
  sleep 1
}

run_step() {  # run_step CMD...: in its own process group, waited for so that a signal stops it at once
  setsid "$@" </dev/null 3>&- 4>&- &
  step=$!
  wait "$step"
  local status=$?
  step=
  return "$status"
}

mounts_under() {  # mount points at or below $1, deepest first
  awk -v dir="$1" '$5 == dir || index($5, dir "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

cleanup() {
  exec 1>&3 2>&4
  [ -n "$work" ] || return 0
  local cleanup_started processes_stopped mount
  cleanup_started=$(date +%s)
  [ -n "$step" ] && kill -- "-$step" 2>/dev/null
  if [ -n "$root" ] && [ -d "$root" ]; then
    if [ -x "$root/usr/bin/bazel" ] && [ -d "$root/root/rules_ota" ]; then
      timeout 60 chroot "$root" /bin/sh -c 'cd /root/rules_ota && bazel shutdown' </dev/null >/dev/null 2>&1
    fi
    stop_chroot_processes
  fi
  processes_stopped=$(date +%s)
  for mount in $(mounts_under "$work"); do
    umount -R "$mount" 2>/dev/null || umount -R -l "$mount" 2>/dev/null
  done
  if [ -n "$(mounts_under "$work")" ]; then  # never rm -rf through a mount of the host's /dev or /proc
    echo "fresh machine: could not unmount $(mounts_under "$work" | tr '\n' ' '); left $work in place" >&2
    exit 1
  fi
  rm -rf --one-file-system "$work"
  echo "fresh machine: cleaned up $work in $(( $(date +%s) - cleanup_started )) s (processes" \
       "$(( processes_stopped - cleanup_started )) s, mounts and files $(( $(date +%s) - processes_stopped )) s)" >&2
}
trap cleanup EXIT
trap 'echo "fresh machine: FAILED: stopped by a signal" >&3; exit 143' TERM INT HUP

[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot and bind mounts)"
export DEBIAN_FRONTEND=noninteractive
if ! command -v debootstrap >/dev/null; then
  apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null || fail "apt-get install debootstrap"
fi

# The Debian mirror this machine's apt uses for its own release.
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
targets=$(apt-get indextargets --no-release-info --format '$(SITE) $(RELEASE) $(TARGET_OF)')
mirror=$(awk -v release="$codename" '$2 == release && $3 == "deb" && !found { print $1; found = 1 }' <<<"$targets")
[ -n "$mirror" ] || fail "no apt source of this machine serves '$codename' (apt-get indextargets)"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/rules_ota-fresh.XXXXXX")
# The root lives in memory: dpkg's and Bazel's fsyncs cost nothing there, and removing it is an unmount
# rather than minutes of rm on a loaded disk. It peaks at about 1.9 GB (bookworm, after the build).
mount -t tmpfs -o size=12g,mode=0755 rules_ota-fresh "$work" || fail "mount a tmpfs on $work"
root=$work/root
log=$work/log
started=$(date +%s)
run_step debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$log" 2>&1 ||
  fail "debootstrap --variant=minbase $suite $mirror: $(reason)"
debootstrap_s=$(( $(date +%s) - started ))

# What a fresh machine of this kind has to reach apt and PyPI, nothing more. apt: this machine's
# sources (for another suite, its codename in place of ours) and every apt.conf(.d) file that sets an
# Acquire:: option (proxies, validity checks); services do not start where this machine's policy-rc.d
# says so. DNS: resolv.conf. TLS: the trust store as installed, bundle included, and the local CAs that
# update-ca-certificates adds back when the chroot installs ca-certificates. pip: its system-wide
# configuration files; the PIP_* and CA-bundle variables go into the command's environment below.
# Not root's ~/.config/pip: on this kind of machine it points pip at wheel mirrors on the local disk
# (/opt), which a new user's machine does not have.
rm -f "$root/etc/apt/sources.list"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && sed -E "s/\\b$codename(-|\\b)/$suite\\1/g" "$f" >"$root$f"
done
for f in /etc/apt/apt.conf /etc/apt/apt.conf.d/*; do
  [ -f "$f" ] && grep -q '^[[:space:]]*Acquire::' "$f" && cp "$f" "$root$f"
done
[ -f /usr/sbin/policy-rc.d ] && cp /usr/sbin/policy-rc.d "$root/usr/sbin/policy-rc.d"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/etc/ssl/certs" "$root/usr/local/share/ca-certificates"
cp -rL /etc/ssl/certs/. "$root/etc/ssl/certs/"
[ -d /usr/local/share/ca-certificates ] && cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
[ -d /etc/xdg/pip ] && mkdir -p "$root/etc/xdg" && cp -r /etc/xdg/pip "$root/etc/xdg/pip"
environment=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root USER=root LOGNAME=root)
while IFS='=' read -r name _; do
  case "$name" in
    PIP_* | SSL_CERT_FILE | SSL_CERT_DIR | REQUESTS_CA_BUNDLE | CURL_CA_BUNDLE | [Hh][Tt][Tt][Pp]_[Pp][Rr][Oo][Xx][Yy] | \
      [Hh][Tt][Tt][Pp][Ss]_[Pp][Rr][Oo][Xx][Yy] | [Nn][Oo]_[Pp][Rr][Oo][Xx][Yy]) environment+=("$name=${!name}") ;;
  esac
done < <(env)

for fs in proc sys dev; do
  mount --rbind "/$fs" "$root/$fs" && mount --make-rslave "$root/$fs" || fail "bind-mount /$fs into the chroot"
done

# The clone: committed files only, at this checkout's commit.
git clone -q --no-hardlinks "$checkout" "$root/root/rules_ota" >"$log" 2>&1 &&
  git -C "$root/root/rules_ota" checkout -q --detach "$(git -C "$checkout" rev-parse HEAD)" >>"$log" 2>&1 ||
  fail "git clone $checkout: $(reason)"
command=$(awk '/^```sh$/ { inside = 1; next } inside { print; exit }' "$root/root/rules_ota/README.md")
[ -n "$command" ] || fail "README.md has no \`\`\`sh block"

# Each simple command of the line is traced with its start time into readme.trace, for the time split.
cat >"$root/root/readme-first-command.sh" <<EOF
cd /root/rules_ota
exec 9>/root/readme.trace
BASH_XTRACEFD=9
PS4='+ \$EPOCHSECONDS '
set -x
$command
EOF
in_chroot=(chroot "$root" /usr/bin/env -i "${environment[@]}" /bin/bash)

echo "fresh machine: Debian $suite minbase from $mirror in $debootstrap_s s; running \`$command\`"
started=$(date +%s)
run_step "${in_chroot[@]}" /root/readme-first-command.sh >"$log" 2>&1 || fail "$command: $(reason)"
ended=$(date +%s)
readme_s=$(( ended - started ))
build_started=$(awk '$3 == "bazel" { print $2 }' "$root/root/readme.trace")
bootstrap_s=$(( ${build_started:-$ended} - started ))
build_s=$(( ended - ${build_started:-$ended} ))
echo "fresh machine: $("${in_chroot[@]}" -c 'echo "Debian $(cat /etc/debian_version), bazel-bootstrap $(dpkg-query -W -f=\${Version} bazel-bootstrap), $(python3 --version)"' </dev/null 2>&1)"

package=/root/rules_ota/bazel-bin/release/incremental_ota.zip
started=$(date +%s)
run_step "${in_chroot[@]}" -c "cd /root/rules_ota && test -f $package && bazel run //tools:ota_inspect -- $package" >"$log" 2>&1 ||
  fail "ota_inspect $package: $(reason)"
grep -q '^# manifest.pb' "$log" && grep -q '^# payload by operation and method' "$log" ||
  fail "ota_inspect $package printed no manifest and size breakdown: $(reason)"
inspect_s=$(( $(date +%s) - started ))

echo "fresh machine: README build ok in $readme_s s (debootstrap $debootstrap_s s, bootstrap.sh $bootstrap_s s," \
     "bazel build $build_s s, ota_inspect $inspect_s s; whole step $(( $(date +%s) - step_started )) s)"
