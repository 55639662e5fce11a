#!/usr/bin/env bash
# Checks the rossip Debian package and rossipd.service under a real systemd:
# boots Debian bookworm with systemd-nspawn in a container that has its own
# root filesystem and only its own loopback (--private-network), installs the
# .deb there and checks the service, its socket, reload, hardening, watchdog,
# upgrade, stop/start, the user unit, remove and purge, printing one PASS or
# FAIL line each.
#
#   sudo systemd/check-in-container.sh [--mirror URL] ROOTDIR DEB
#
# ROOTDIR is made with debootstrap (minbase + systemd, dbus, procps,
# libpam-systemd) when it holds no system yet, and reused as it is otherwise;
# earlier runs' rossip package, users and files in it are removed first. The
# user-unit checks need libpam-systemd there (for user@.service) and are
# skipped without it. DEB is the package that systemd/build-deb.sh built. Needs root, debootstrap and systemd-nspawn
# (Debian: apt-get install --no-install-recommends debootstrap
# systemd-container). --mirror is passed to debootstrap (default: its own).
#
# NOT part of CI: debootstrap downloads about 100 MB, and the run takes about
# two minutes (the watchdog check alone waits 65 s).
#
# Safety: systemd, systemctl and the package's maintainer scripts run only
# inside the container, never against the host's root. The host needs no
# systemd as PID 1: nspawn runs with --register=no --keep-unit, so it needs
# no machined or system bus. The container is stopped by PID on exit.
#
# Exit status: 0 when every check passed, 1 when one failed, 2 when the
# container could not be set up.
set -uo pipefail

say() { printf 'check-in-container: %s\n' "$*"; }
die() {
    printf 'check-in-container: error: %s\n' "$*" >&2
    exit 2
}

mirror=()
while [ $# -gt 0 ]; do
    case "$1" in
    --mirror)
        [ $# -ge 2 ] || die "--mirror needs a URL"
        mirror=("$2")
        shift 2
        ;;
    -h | --help)
        sed -n '2,31s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
        exit 0
        ;;
    -*) die "unknown option: $1 (see --help)" ;;
    *) break ;;
    esac
done
[ $# -eq 2 ] || die "usage: $0 [--mirror URL] ROOTDIR DEB (see --help)"
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, systemd-nspawn, nsenter)"
for tool in debootstrap systemd-nspawn nsenter; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install --no-install-recommends debootstrap systemd-container)"
done

root="$(realpath -m -- "$1")"
deb="$(realpath -e -- "$2")" || die "no such package: $2"
# The host's root must never be booted or written: a systemd booted there
# would apply its tmpfiles.d (and empty the host's /tmp).
[ "$root" != / ] || die "ROOTDIR must not be /"
[ "$(stat -c %d:%i -- "$root" 2>/dev/null)" != "$(stat -c %d:%i /)" ] || die "ROOTDIR is the host's root"

if [ ! -x "$root/usr/lib/systemd/systemd" ]; then
    if [ -d "$root" ] && [ -n "$(ls -A -- "$root")" ]; then
        die "$root is not empty and holds no systemd: refusing to debootstrap over it"
    fi
    say "debootstrap bookworm into $root (about 100 MB)"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps,libpam-systemd \
        bookworm "$root" "${mirror[@]}" >"$root.debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $root.debootstrap.log"
fi
cp -- "$deb" "$root/root/rossip-under-test.deb" || die "cannot copy $deb into $root/root"
# Relative to the container's root.
pkg=/root/rossip-under-test.deb

nspawn_pid=""
cpid=""
boot_log="$(mktemp "${TMPDIR:-/tmp}/rossip-nspawn.XXXXXX")"

# Runs a command inside the container (all its namespaces, its root).
in_ct() { nsenter -t "$cpid" -a "$@"; }

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# Waits up to $2 seconds for PID $1 to end.
wait_gone() {
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        alive "$1" || return 0
        sleep 0.2
    done
    return 1
}

# Stops the container: a clean poweroff first, then nspawn by its PID, then
# the container's init by its PID (which ends its whole PID namespace).
stop_container() {
    alive "$nspawn_pid" || return 0
    if alive "$cpid"; then
        in_ct systemctl poweroff >/dev/null 2>&1 || true
    fi
    wait_gone "$nspawn_pid" 60 && return 0
    say "container did not power off; sending SIGTERM to nspawn (pid $nspawn_pid)"
    kill -TERM "$nspawn_pid" 2>/dev/null || true
    wait_gone "$nspawn_pid" 15 && return 0
    say "sending SIGKILL to the container's init (pid $cpid) and nspawn (pid $nspawn_pid)"
    if alive "$cpid"; then kill -KILL "$cpid" 2>/dev/null || true; fi
    kill -KILL "$nspawn_pid" 2>/dev/null || true
    wait_gone "$nspawn_pid" 10
}
cleanup() {
    stop_container
    rm -f -- "$boot_log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "booting $root (systemd-nspawn --private-network; boot log: $boot_log)"
systemd-nspawn -D "$root" --private-network --register=no --keep-unit \
    --console=read-only -b >"$boot_log" 2>&1 &
nspawn_pid=$!
# The container's init is nspawn's child running systemd in a PID namespace
# of its own; nspawn's first child is a short-lived helper that forks it.
host_pidns="$(readlink /proc/self/ns/pid)"
for ((i = 0; i < 300; i++)); do
    cpid=""
    for c in $(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null); do
        comm="$(cat "/proc/$c/comm" 2>/dev/null)"
        if { [ "$comm" = systemd ] || [ "$comm" = init ]; } &&
            [ "$(readlink "/proc/$c/ns/pid" 2>/dev/null)" != "$host_pidns" ]; then
            cpid="$c"
        fi
    done
    [ -z "$cpid" ] || break
    alive "$nspawn_pid" || break
    sleep 0.2
done
if [ -z "$cpid" ]; then
    cat -- "$boot_log" >&2
    die "systemd-nspawn did not start a container (boot log above)"
fi
state="$(timeout 120 nsenter -t "$cpid" -a systemctl is-system-running --wait 2>&1)"
case "$state" in
running) say "container booted: nspawn pid $nspawn_pid, container init pid $cpid" ;;
degraded)
    say "container booted degraded (not rossip's doing, it is not installed yet); failed units:"
    in_ct systemctl --failed --no-legend --no-pager
    ;;
*)
    tail -n 40 -- "$boot_log" >&2
    die "container did not finish booting: is-system-running says '$state'"
    ;;
esac

# Leftovers of an earlier run would hide what a fresh install does.
# shellcheck disable=SC2016 # ${db:Status-Status} is dpkg-query's, not ours.
pkg_state="$(in_ct dpkg-query -W -f='${db:Status-Status}' rossip 2>/dev/null)"
if [ -n "$pkg_state" ] && [ "$pkg_state" != not-installed ]; then
    say "purging rossip left by an earlier run"
    in_ct dpkg --purge rossip >/dev/null 2>&1
fi
for user in tester outsider solo rossip; do
    if in_ct getent passwd "$user" >/dev/null; then in_ct userdel -r "$user" >/dev/null 2>&1; fi
    if in_ct getent group "$user" >/dev/null; then in_ct groupdel "$user" >/dev/null 2>&1; fi
done
in_ct rm -rf /etc/rossip /var/lib/rossip

passes=0
fails=0
pass() {
    printf 'PASS %s\n' "$*"
    passes=$((passes + 1))
}
fail() {
    printf 'FAIL %s\n' "$*"
    fails=$((fails + 1))
}
# expect DESCRIPTION WANT GOT
expect() {
    if [ "$3" = "$2" ]; then pass "$1: $3"; else fail "$1: got '$3', want '$2'"; fi
}
# expect_match DESCRIPTION EXTENDED-REGEX GOT
expect_match() {
    local hit
    if hit="$(printf '%s\n' "$3" | grep -Em1 -- "$2")"; then
        pass "$1: $hit"
    else
        fail "$1: got '$3', want /$2/"
    fi
}
prop() { in_ct systemctl show -p "$1" --value rossipd; }
unit_state() { in_ct systemctl "$1" rossipd 2>&1; }
# journal_has PID STRING: polls this boot's journal of process PID for a
# fixed string for up to 15 s (the journal is persistent: earlier runs'
# lines must not count).
journal_has() {
    local i
    for ((i = 0; i < 75; i++)); do
        in_ct journalctl -b "_PID=$1" --no-pager -o cat | grep -qF -- "$2" && return 0
        sleep 0.2
    done
    return 1
}
diagnose() {
    printf -- '--- systemctl status rossipd\n'
    in_ct systemctl status rossipd --no-pager 2>&1
    printf -- '--- journalctl -u rossipd -b\n'
    in_ct journalctl -u rossipd -b --no-pager 2>&1 | tail -n 40
    printf -- '---\n'
}

# --- install
# dpkg -i returns once the postinst's start has seen READY=1 (Type=notify).
started=$SECONDS
if out="$(in_ct dpkg -i "$pkg" 2>&1)"; then pass "dpkg -i: installed"; else fail "dpkg -i: $out"; fi
expect_match "postinst: user rossip" '^rossip:x:[0-9]+:[0-9]+:[^:]*:/var/lib/rossip:/usr/sbin/nologin$' \
    "$(in_ct getent passwd rossip)"
expect_match "postinst: group rossip" '^rossip:x:[0-9]+:' "$(in_ct getent group rossip)"
expect "/etc/rossip mode owner group" "750 root rossip" "$(in_ct stat -c '%a %U %G' /etc/rossip 2>&1)"
expect "systemctl is-enabled rossipd" enabled "$(unit_state is-enabled)"
expect "systemctl is-active rossipd (right after install)" active "$(unit_state is-active)"
expect "WatchdogUSec" 30s "$(prop WatchdogUSec)"
expect "NRestarts" 0 "$(prop NRestarts)"
expect_match "StatusText (sent by rossipd)" '^[0-9]+ peers alive$' "$(prop StatusText)"
main_pid="$(prop MainPID)"
expect_match "MainPID" '^[1-9][0-9]*$' "$main_pid"
[ "$(unit_state is-active)" = active ] || diagnose
if out="$(in_ct systemd-analyze verify rossipd.service 2>&1)" && [ -z "$out" ]; then
    pass "systemd-analyze verify rossipd.service: no warnings"
else
    fail "systemd-analyze verify rossipd.service: $out"
fi

# --- the local socket and who may use it
expect "/run/rossip mode owner group" "750 rossip rossip" "$(in_ct stat -c '%a %U %G' /run/rossip 2>&1)"
expect "socket type mode owner group" "socket 660 rossip rossip" \
    "$(in_ct stat -c '%F %a %U %G' /run/rossip/rossipd.sock 2>&1)"
out="$(in_ct rossipctl --socket /run/rossip/rossipd.sock status 2>&1)"
expect_match "rossipctl status as root" '^state: running$' "$out"
in_ct useradd -m -G rossip tester
in_ct useradd -m outsider
out="$(in_ct su tester -c 'rossipctl status' 2>&1)"
expect_match "rossipctl status as tester (group rossip)" '^state: running$' "$out"
out="$(in_ct su outsider -c 'rossipctl status' 2>&1)"
code=$?
expect "rossipctl status as outsider (not in rossip): exit code" 77 "$code"
expect_match "rossipctl status as outsider: message" 'permission denied.*rossip' "$out"
text="hello-from-check-$$"
out="$(in_ct su tester -c "rossipctl send $text" 2>&1)"
expect_match "rossipctl send as tester" '^[0-9a-f]{32}-[0-9]+$' "$out"
expect_match "rossipctl tail -n 1" ": $text\$" "$(in_ct su tester -c 'rossipctl tail -n 1' 2>&1)"
# The audit log names the caller's real uid (the unit has no PrivateUsers=,
# which would show every user but root and rossip as 65534).
tester_uid="$(in_ct id -u tester)"
expect_match "audit log names the tester's uid ($tester_uid)" "uid $tester_uid .*calls send" \
    "$(in_ct journalctl -b "_PID=$main_pid" --no-pager -o cat | grep 'calls send' | tail -n 1)"

# --- reload (SIGHUP) with a config file
in_ct sh -c 'umask 027 && printf "log_level = \"debug\"\n" >/etc/rossip/rossipd.toml && chgrp rossip /etc/rossip/rossipd.toml'
if in_ct systemctl reload rossipd; then pass "systemctl reload rossipd"; else fail "systemctl reload rossipd"; fi
if journal_has "$main_pid" "SIGHUP received; reloading the configuration"; then pass "journal: SIGHUP received"; else fail "journal: no SIGHUP line"; fi
if journal_has "$main_pid" "log_level info -> debug"; then pass "journal: log_level info -> debug"; else fail "journal: no 'log_level info -> debug'"; fi
expect "MainPID unchanged by reload" "$main_pid" "$(prop MainPID)"
expect "is-active after reload" active "$(unit_state is-active)"

# --- the hardening as the kernel applies it
status="$(in_ct cat "/proc/$main_pid/status" 2>&1)"
field() { printf '%s\n' "$status" | awk -v k="$1:" '$1 == k { print $2 }'; }
for cap in CapEff CapPrm CapBnd CapAmb; do
    expect "$cap of rossipd" 0000000000000000 "$(field "$cap")"
done
expect "NoNewPrivs of rossipd" 1 "$(field NoNewPrivs)"
expect "Seccomp of rossipd (2 = filter)" 2 "$(field Seccomp)"
expect "Uid of rossipd" "$(in_ct id -u rossip)" "$(field Uid)"

# --- watchdog (WatchdogSec=30s): still the same process after 65 s
say "watchdog: watching rossipd until 65 s after its start"
ok=true
while [ $((SECONDS - started)) -lt 65 ]; do
    if [ "$(unit_state is-active)" != active ] || [ "$(prop NRestarts)" != 0 ]; then
        ok=false
        break
    fi
    sleep 5
done
if $ok && [ "$(prop MainPID)" = "$main_pid" ] && [ "$(prop NRestarts)" = 0 ]; then
    pass "watchdog: active for $((SECONDS - started)) s, NRestarts 0, WatchdogTimestamp $(prop WatchdogTimestamp)"
else
    fail "watchdog: active=$(unit_state is-active) NRestarts=$(prop NRestarts) MainPID=$(prop MainPID) (was $main_pid)"
    diagnose
fi

# --- upgrade: the same package again restarts the service
if out="$(in_ct dpkg -i "$pkg" 2>&1)"; then pass "dpkg -i again (upgrade)"; else fail "dpkg -i again: $out"; fi
new_pid="$(prop MainPID)"
if [ "$new_pid" != "$main_pid" ] && [ "$new_pid" != 0 ]; then
    pass "upgrade restarted rossipd: MainPID $main_pid -> $new_pid"
else
    fail "upgrade did not restart rossipd: MainPID $main_pid -> $new_pid"
fi
expect "is-active after upgrade" active "$(unit_state is-active)"
expect "/etc/rossip/rossipd.toml kept by upgrade" 'log_level = "debug"' "$(in_ct cat /etc/rossip/rossipd.toml 2>&1)"

# --- stop and start
if in_ct systemctl stop rossipd; then pass "systemctl stop rossipd"; else fail "systemctl stop rossipd"; fi
expect "is-active after stop" inactive "$(unit_state is-active)"
if journal_has "$new_pid" "SIGTERM received; leaving the cluster"; then pass "journal: SIGTERM received; leaving the cluster"; else fail "journal: no SIGTERM line"; fi
expect "Result after stop (clean exit)" success "$(prop Result)"
if in_ct systemctl start rossipd; then pass "systemctl start rossipd"; else fail "systemctl start rossipd"; fi
expect "is-active after start" active "$(unit_state is-active)"
expect_match "history kept across restarts (tail -n 1)" ": $text\$" "$(in_ct rossipctl tail -n 1 2>&1)"

# --- a configuration error: the unit fails with the reason and is not
# restarted in a loop (exit status 2, RestartPreventExitStatus=2)
in_ct cp -p /etc/rossip/rossipd.toml /etc/rossip/rossipd.toml.good
in_ct sh -c 'printf "port = \"seven\"\n" >/etc/rossip/rossipd.toml'
restarts_before="$(prop NRestarts)"
if in_ct systemctl restart rossipd 2>/dev/null; then
    fail "systemctl restart with a bad config file succeeded"
else
    pass "systemctl restart with a bad config file fails"
fi
sleep 3 # longer than RestartSec=2s: a restart loop would have begun
expect "is-active with a bad config file" failed "$(unit_state is-active)"
expect "ExecMainStatus (a configuration error)" 2 "$(prop ExecMainStatus)"
expect "NRestarts with a bad config file (no restart loop)" "$restarts_before" "$(prop NRestarts)"
# shellcheck disable=SC2016 # backquotes are part of the message, not a command.
expect_match "journal names the file, line and key" 'rossipd.toml, line 1, key `port`' \
    "$(in_ct journalctl -u rossipd -b --no-pager -o cat | tail -n 20)"
in_ct mv /etc/rossip/rossipd.toml.good /etc/rossip/rossipd.toml
in_ct systemctl reset-failed rossipd
if in_ct systemctl start rossipd; then pass "started again with the good config"; else fail "did not start again with the good config"; fi

# --- the user unit (systemctl --user), run by a lingering user's manager
# shellcheck disable=SC2016 # ${db:Status-Status} is dpkg-query's, not ours.
if [ "$(in_ct dpkg-query -W -f='${db:Status-Status}' libpam-systemd 2>/dev/null)" = installed ]; then
    # Both daemons would bind the gossip port 7465: the system one pauses.
    in_ct systemctl stop rossipd
    in_ct useradd -m solo
    solo_uid="$(in_ct id -u solo)"
    in_ct loginctl enable-linger solo
    for ((i = 0; i < 75; i++)); do
        [ "$(in_ct systemctl is-active "user@$solo_uid.service")" = active ] && break
        sleep 0.2
    done
    expect "user@$solo_uid.service (linger)" active "$(in_ct systemctl is-active "user@$solo_uid.service")"
    as_solo() { in_ct runuser -u solo -- env "XDG_RUNTIME_DIR=/run/user/$solo_uid" "$@"; }
    if as_solo systemctl --user start rossipd; then pass "systemctl --user start rossipd"; else fail "systemctl --user start rossipd"; fi
    expect "user unit: is-active" active "$(as_solo systemctl --user is-active rossipd 2>&1)"
    expect_match "user unit: StatusText" '^[0-9]+ peers alive$' "$(as_solo systemctl --user show -p StatusText --value rossipd)"
    expect_match "user unit: rossipctl status (socket found by itself)" '^state: running$' "$(as_solo rossipctl status 2>&1)"
    expect "user unit: socket mode owner" "socket 600 solo" \
        "$(as_solo stat -c '%F %a %U' "/run/user/$solo_uid/rossip/rossipd.sock" 2>&1)"
    user_pid="$(as_solo systemctl --user show -p MainPID --value rossipd)"
    ustatus="$(in_ct cat "/proc/$user_pid/status" 2>&1)"
    expect "user unit: NoNewPrivs, Seccomp" "1 2" \
        "$(printf '%s\n' "$ustatus" | awk '$1 == "NoNewPrivs:" { n = $2 } $1 == "Seccomp:" { s = $2 } END { print n, s }')"
    if as_solo systemctl --user stop rossipd; then pass "systemctl --user stop rossipd"; else fail "systemctl --user stop rossipd"; fi
    if journal_has "$user_pid" "SIGTERM received; leaving the cluster"; then pass "user unit: journal: SIGTERM received"; else fail "user unit: journal: no SIGTERM line"; fi
    in_ct loginctl disable-linger solo
    if in_ct systemctl start rossipd; then pass "system rossipd started again"; else fail "system rossipd did not start again"; fi
else
    say "SKIP user unit: no libpam-systemd in $root (user@.service needs it; a new ROOTDIR gets it)"
fi

# --- remove and purge
if out="$(in_ct dpkg --remove rossip 2>&1)"; then pass "dpkg --remove rossip"; else fail "dpkg --remove: $out"; fi
expect "is-active after remove" inactive "$(unit_state is-active)"
# Debian keeps the enablement symlink until purge (so that a reinstall
# restores it) and masks the unit meanwhile: "masked" means it cannot start.
expect "is-enabled after remove (Debian masks until purge)" masked "$(unit_state is-enabled)"
if in_ct pgrep -x rossipd >/dev/null; then fail "a rossipd process remains after remove"; else pass "no rossipd process after remove"; fi
if out="$(in_ct dpkg --purge rossip 2>&1)"; then pass "dpkg --purge rossip"; else fail "dpkg --purge: $out"; fi
expect_match "unit gone after purge" 'No such file|not-found' "$(unit_state is-enabled)"
if in_ct test -e /etc/systemd/system/multi-user.target.wants/rossipd.service ||
    in_ct test -L /etc/systemd/system/multi-user.target.wants/rossipd.service; then
    fail "enablement symlink left after purge"
else
    pass "enablement symlink removed by purge"
fi
for dir in /var/lib/rossip /etc/rossip; do
    if in_ct test -e "$dir"; then fail "$dir left after purge"; else pass "$dir removed by purge"; fi
done

# --- power off
say "powering the container off"
stop_container
if alive "$nspawn_pid" || alive "$cpid"; then
    fail "container still running: nspawn pid $nspawn_pid, init pid $cpid"
else
    pass "container powered off (nspawn pid $nspawn_pid and init pid $cpid gone)"
fi

printf '%d passed, %d failed\n' "$passes" "$fails"
[ "$fails" -eq 0 ]
