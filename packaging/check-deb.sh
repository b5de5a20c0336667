#!/usr/bin/env bash
# Builds the smswire .deb (packaging/build-deb.sh) and checks it for real: contents,
# control fields, conffiles, maintainer scripts, the systemd unit (systemd-analyze
# verify), the man page, lintian (no errors), and the shipped configuration
# (smswire check-config with the packaged binary).
#
#   packaging/check-deb.sh             the checks above; changes nothing on the machine
#                                      but installing missing tools with apt-get
#   packaging/check-deb.sh --install   also installs the package on this machine
#                                      (dpkg -i), runs the daemon as the smswire user,
#                                      then removes and purges it, checking what the
#                                      maintainer scripts did at each step. Needs root,
#                                      and refuses to run where smswire is already
#                                      installed or a smswire user already exists.
#   packaging/check-deb.sh --boot      also boots a throwaway Debian 12 (debootstrap +
#                                      systemd-nspawn, private network) with systemd as
#                                      PID 1, installs the package there and checks the
#                                      real service: Type=notify start, sandboxing, admin
#                                      socket, backup, API, restart on upgrade, stop,
#                                      remove and purge. Needs root and Debian's archive (about a
#                                      minute more); the host is left as it was.
#
# Missing tools (lintian, systemd-analyze) are installed with apt-get, which needs root
# and Debian's package archive. Exits non-zero with a "check-deb: FAIL:" line on the
# first failed check.
set -euo pipefail
cd "$(dirname "$0")/.."

install_test=0
boot_test=0
for arg in "$@"; do
    case "$arg" in
        --install) install_test=1 ;;
        --boot) boot_test=1 ;;
        -h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "check-deb: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

fail() {
    echo "check-deb: FAIL: $*" >&2
    exit 1
}
ok() { echo "check-deb: ok: $*"; }
step() { echo "== $*"; }

apt_updated=0
# need TOOL PACKAGE: installs PACKAGE with apt-get when TOOL is not on PATH.
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] || fail "$1 is missing and installing $2 needs root"
    echo "== installing $2 (for $1)"
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq || fail "apt-get update failed"
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" \
        >/dev/null || fail "apt-get install $2 failed"
    command -v "$1" >/dev/null 2>&1 || fail "$2 is installed but $1 is still missing"
}

work="$(mktemp -d)"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# ---------------------------------------------------------------------------------------
# Boot test: the package under a real systemd, in a throwaway container.
boot_test() {
    # Globals, not locals: the EXIT trap uses them after a fail() in here.
    local deb="$1"
    nsroot="$work/nsroot" machine="smswire-check-$$" nspawn_pid="" leader=""
    step "boot test (systemd-nspawn)"
    [ "$(id -u)" = 0 ] || fail "--boot needs root"
    need debootstrap debootstrap
    need systemd-nspawn systemd-container
    local mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,adduser,ca-certificates,init-system-helpers \
        bookworm "$nsroot" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log" >&2; fail "debootstrap failed"; }
    cp "$deb" "$nsroot/root/smswire.deb"

    stop_container() {
        if [ -n "$leader" ] && kill -0 "$leader" 2>/dev/null; then
            kill -s SIGRTMIN+4 "$leader" 2>/dev/null || true # systemd: poweroff
        fi
        if [ -n "$nspawn_pid" ]; then
            for _ in $(seq 1 100); do
                kill -0 "$nspawn_pid" 2>/dev/null || break
                sleep 0.2
            done
            kill -KILL "$nspawn_pid" 2>/dev/null || true
            wait "$nspawn_pid" 2>/dev/null || true
        fi
        nspawn_pid=""
        rm -rf "/run/systemd/nspawn/propagate/$machine"
    }
    trap 'stop_container; cleanup' EXIT

    systemd-nspawn --boot --directory="$nsroot" --machine="$machine" --register=no \
        --keep-unit --private-network </dev/null >"$work/nspawn.log" 2>&1 &
    nspawn_pid=$!
    for _ in $(seq 1 100); do
        leader="$(pgrep -P "$nspawn_pid" -x systemd || true)"
        [ -n "$leader" ] && break
        kill -0 "$nspawn_pid" 2>/dev/null || { cat "$work/nspawn.log" >&2; fail "systemd-nspawn exited"; }
        sleep 0.1
    done
    [ -n "$leader" ] || fail "no systemd in the container"
    # inside CMD...: runs CMD inside the container (all its namespaces, a clean environment).
    inside() { nsenter --target "$leader" --all -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
    local state=""
    for _ in $(seq 1 120); do
        state="$(inside systemctl is-system-running 2>/dev/null || true)"
        case "$state" in running | degraded) break ;; esac
        sleep 0.5
    done
    case "$state" in running | degraded) ;; *) fail "the container did not boot (state: $state)" ;; esac
    ok "container booted, systemd is PID 1 ($state)"

    inside dpkg -i /root/smswire.deb >"$work/boot-dpkg.log" 2>&1 \
        || { cat "$work/boot-dpkg.log" >&2; fail "dpkg -i failed in the container"; }
    # Type=notify: "active" only once the daemon sent READY=1.
    inside systemctl is-active --quiet smswire \
        || { inside systemctl status smswire --no-pager >&2 || true; fail "smswire.service is not active after install"; }
    inside systemctl is-enabled --quiet smswire || fail "smswire.service is not enabled"
    local pid1
    pid1="$(inside systemctl show -P MainPID smswire)"
    [ "$(inside systemctl show -P Type smswire)" = notify ] || fail "the service is not Type=notify"
    [ "$(inside stat -c '%U:%G %a' /run/smswire/admin.sock)" = "smswire:smswire 660" ] \
        || fail "admin socket: $(inside stat -c '%U:%G %a' /run/smswire/admin.sock)"
    [ "$(inside stat -c '%U:%G %a' /run/smswire)" = "smswire:smswire 750" ] || fail "/run/smswire mode"
    [ "$(inside stat -c '%U:%G %a' /var/lib/smswire/smswire.redb)" = "smswire:smswire 640" ] \
        || fail "data file: $(inside stat -c '%U:%G %a' /var/lib/smswire/smswire.redb) (UMask=0027?)"
    ok "started by systemd (Type=notify, pid $pid1); socket 0660, /run/smswire 0750, data 0640"

    inside smswire account create boot-check --balance 1 >"$work/boot-account" \
        || fail "smswire account create failed in the container"
    inside useradd --no-create-home --groups smswire smswire-ops
    inside setpriv --reuid smswire-ops --regid smswire-ops --init-groups smswire account list \
        >/dev/null || fail "a member of group smswire cannot use the admin socket"
    inside userdel smswire-ops
    # The sandboxed daemon writes backups only where it may write: /var/lib/smswire.
    inside smswire backup /var/lib/smswire/boot-check.redb >/dev/null \
        || fail "smswire backup into /var/lib/smswire failed under the sandbox"
    [ "$(inside stat -c %U /var/lib/smswire/boot-check.redb)" = smswire ] \
        || fail "the backup is not owned by smswire"
    if command -v curl >/dev/null 2>&1; then
        # The host's curl in the container's network namespace (its loopback).
        local key secret
        key="$(awk '/^key_id:/ {print $2}' "$work/boot-account")"
        secret="$(awk '/^secret:/ {print $2}' "$work/boot-account")"
        [ "$(nsenter --target "$leader" --net -- curl -s http://127.0.0.1:8080/readyz)" = ready ] \
            || fail "GET /readyz is not ready"
        nsenter --target "$leader" --net -- curl -s -f -X POST http://127.0.0.1:8080/v1/sms \
            -H "X-API-KEY-ID: $key" -H "X-API-KEY-SECRET: $secret" \
            -H 'Content-Type: application/json' \
            -d '{"from": "36789", "to": "33612345678", "body": "boot check"}' \
            >"$work/boot-sms" || fail "POST /v1/sms failed"
        grep -q '"status":"pending"' "$work/boot-sms" || fail "POST /v1/sms: $(cat "$work/boot-sms")"
        ok "admin socket (root, group smswire), backup and API (readyz, send) work under the sandbox"
    else
        ok "admin socket and backup work under the sandbox (no curl here: API not tried)"
    fi

    # Reinstalling is the upgrade path: postinst restarts the service.
    inside dpkg -i /root/smswire.deb >"$work/boot-dpkg.log" 2>&1 || fail "reinstall failed in the container"
    inside systemctl is-active --quiet smswire || fail "smswire.service is not active after the upgrade"
    [ "$(inside systemctl show -P MainPID smswire)" != "$pid1" ] || fail "the upgrade did not restart the daemon"
    ok "upgrade restarted the service (pid $(inside systemctl show -P MainPID smswire))"

    local t0 t1
    t0="$(date +%s%N)"
    inside systemctl stop smswire
    t1="$(date +%s%N)"
    [ "$(inside systemctl show -P Result smswire)" = success ] \
        || fail "stop result: $(inside systemctl show -P Result smswire) (killed after TimeoutStopSec?)"
    ok "systemctl stop: clean, in $(( (t1 - t0) / 1000000 )) ms"
    inside systemctl start smswire || fail "systemctl start failed"

    inside dpkg --remove smswire >"$work/boot-dpkg.log" 2>&1 || fail "dpkg --remove failed in the container"
    ! inside systemctl is-active --quiet smswire || fail "the service still runs after remove"
    inside test -f /var/lib/smswire/smswire.redb || fail "remove deleted the data in the container"
    inside getent passwd smswire >/dev/null || fail "remove deleted the user in the container"
    inside dpkg --purge smswire >"$work/boot-dpkg.log" 2>&1 || fail "dpkg --purge failed in the container"
    ! inside test -e /var/lib/smswire || fail "purge left /var/lib/smswire in the container"
    ! inside test -e /etc/smswire || fail "purge left /etc/smswire in the container"
    ! inside getent passwd smswire >/dev/null || fail "purge left the user in the container"
    ok "remove stopped it and kept the data; purge deleted data, configuration and user"
    if grep -q 'deluser\|warning\|error' "$work/boot-dpkg.log"; then
        cat "$work/boot-dpkg.log" >&2
        fail "dpkg --purge printed warnings in the container"
    fi

    stop_container
    trap cleanup EXIT
    ok "container stopped"
}

step "build"
deb="$(packaging/build-deb.sh | tail -n 1)"
[ -f "$deb" ] || fail "build-deb.sh printed no package path"
ok "built $deb"

step "contents (dpkg-deb -c)"
dpkg-deb -c "$deb" >"$work/contents" || fail "dpkg-deb -c cannot read $deb"
# path mode: every file the package must hold, with its permissions.
while read -r path mode; do
    line="$(awk -v p="./$path" '$NF == p' "$work/contents")"
    [ -n "$line" ] || fail "the package lacks /$path"
    case "$line" in
        "$mode "*) ;;
        *) fail "/$path has mode ${line%% *}, expected $mode" ;;
    esac
done <<'EOF'
usr/bin/smswire -rwxr-xr-x
etc/smswire/smswire.toml -rw-r--r--
usr/lib/systemd/system/smswire.service -rw-r--r--
usr/share/man/man1/smswire.1.gz -rw-r--r--
usr/share/doc/smswire/README.md -rw-r--r--
usr/share/doc/smswire/examples/smswire.toml -rw-r--r--
usr/share/doc/smswire/copyright -rw-r--r--
usr/share/doc/smswire/changelog.Debian.gz -rw-r--r--
usr/share/lintian/overrides/smswire -rw-r--r--
EOF
if awk '{print $2}' "$work/contents" | grep -qv '^0/0$'; then
    fail "some files are not owned by root:root"
fi
ok "$(grep -vc '/$' "$work/contents") files, all expected ones present"

step "control (dpkg-deb -I)"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = smswire ] || fail "Package is '$(field Package)'"
[ "$(field Section)" = net ] || fail "Section is '$(field Section)', expected net"
[ "$(field Priority)" = optional ] || fail "Priority is '$(field Priority)'"
depends="$(field Depends)"
for dep in ca-certificates adduser libc6; do
    printf '%s\n' "$depends" | tr ',' '\n' | grep -Eq "^ *$dep( |\$)" \
        || fail "Depends lacks $dep: $depends"
done
ok "Depends: $depends"

step "control files (dpkg-deb -e)"
dpkg-deb -e "$deb" "$work/control"
[ "$(cat "$work/control/conffiles")" = /etc/smswire/smswire.toml ] \
    || fail "conffiles is not exactly /etc/smswire/smswire.toml: $(cat "$work/control/conffiles")"
ok "conffiles: /etc/smswire/smswire.toml"
for script in postinst prerm postrm; do
    f="$work/control/$script"
    [ -x "$f" ] || fail "$script is missing or not executable"
    head -n 1 "$f" | grep -qx '#!/bin/sh' || fail "$script does not start with #!/bin/sh"
    grep -qx 'set -e' "$f" || fail "$script lacks set -e"
    sh -n "$f" || fail "$script is not valid sh"
    ! grep -q '#DEBHELPER#' "$f" || fail "$script still holds the DEBHELPER token"
    if command -v checkbashisms >/dev/null 2>&1; then
        checkbashisms "$f" || fail "$script has bashisms"
    fi
done
# Service control only where systemd runs (chroots, containers, image builds).
# shellcheck disable=SC2016 # a literal $ in the pattern
grep -q 'deb-systemd-invoke \$_dh_action smswire.service' "$work/control/postinst" \
    || fail "postinst does not start/restart smswire.service"
grep -q 'deb-systemd-invoke stop smswire.service' "$work/control/prerm" \
    || fail "prerm does not stop smswire.service"
for script in postinst prerm; do
    awk '/deb-systemd-invoke|systemctl/ && !guarded { bad = 1 }
         /\[ -d \/run\/systemd\/system \]/ { guarded = 1 }
         END { exit bad }' "$work/control/$script" \
        || fail "$script calls systemctl or deb-systemd-invoke outside a /run/systemd/system guard"
done
grep -q 'adduser --system' "$work/control/postinst" || fail "postinst creates no system user"
ok "postinst, prerm, postrm: sh, set -e, systemd calls guarded"

step "extract (dpkg-deb -x)"
root="$work/root"
dpkg-deb -x "$deb" "$root"
"$root/usr/bin/smswire" --version >/dev/null || fail "the packaged binary does not run"
ok "$("$root/usr/bin/smswire" --version)"

step "shipped configuration (smswire check-config)"
"$root/usr/bin/smswire" check-config "$root/etc/smswire/smswire.toml" >"$work/effective" \
    || fail "smswire check-config refuses /etc/smswire/smswire.toml"
for want in 'path = "/var/lib/smswire/smswire.redb"' 'socket = "/run/smswire/admin.sock"' \
    'socket_mode = "0660"' 'listen = "127.0.0.1:8080"'; do
    grep -qxF "$want" "$work/effective" || fail "the effective configuration lacks: $want"
done
"$root/usr/bin/smswire" check-config "$root/usr/share/doc/smswire/examples/smswire.toml" \
    >/dev/null || fail "the documented example configuration does not pass check-config"
ok "check-config accepts the installed and the example configuration"

step "systemd unit (systemd-analyze verify)"
need systemd-analyze systemd
# verify wants ExecStart= to exist and man: pages to be found: point both at the
# extracted package rather than at this machine's /usr.
mkdir "$work/unit"
sed "s|^ExecStart=/usr/bin/smswire |ExecStart=$root/usr/bin/smswire |" \
    "$root/usr/lib/systemd/system/smswire.service" >"$work/unit/smswire.service"
grep -q "^ExecStart=$root/" "$work/unit/smswire.service" || fail "no ExecStart=/usr/bin/smswire in the unit"
man_opt=()
command -v man >/dev/null 2>&1 || man_opt=(--man=no)
if ! MANPATH="$root/usr/share/man" systemd-analyze verify "${man_opt[@]}" \
    "$work/unit/smswire.service" >"$work/verify" 2>&1; then
    cat "$work/verify" >&2
    fail "systemd-analyze verify failed"
fi
if [ -s "$work/verify" ]; then
    cat "$work/verify" >&2
    fail "systemd-analyze verify reported something"
fi
for want in Type=notify User=smswire Group=smswire StateDirectory=smswire \
    RuntimeDirectory=smswire RuntimeDirectoryMode=0750 \
    'ExecStart=/usr/bin/smswire serve --config /etc/smswire/smswire.toml'; do
    grep -qxF "$want" "$root/usr/lib/systemd/system/smswire.service" || fail "the unit lacks $want"
done
ok "systemd-analyze verify: nothing to report ${man_opt[*]}"
systemd-analyze security --offline=yes "$work/unit/smswire.service" 2>/dev/null | tail -n 1 || true

step "man page"
if command -v man >/dev/null 2>&1; then
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$root/usr/share/man/man1/smswire.1.gz" \
        2>"$work/manwarn" >"$work/man.txt" || fail "man cannot render smswire.1.gz"
    if [ -s "$work/manwarn" ]; then
        cat "$work/manwarn" >&2
        fail "groff warns about smswire.1"
    fi
    for section in NAME SYNOPSIS DESCRIPTION COMMANDS OPTIONS FILES SIGNALS 'EXIT STATUS' 'SEE ALSO'; do
        grep -qx "$section" "$work/man.txt" || fail "the man page has no $section section"
    done
    ok "smswire(1) renders without warnings"
else
    gzip -t "$root/usr/share/man/man1/smswire.1.gz" || fail "smswire.1.gz is not gzip"
    ok "smswire.1.gz is gzip (man is not installed: not rendered)"
fi

step "debug symbols (.ddeb)"
ddeb="${deb%/*}/smswire-dbgsym_${deb##*/smswire_}"
ddeb="${ddeb%.deb}.ddeb"
if [ -f "$ddeb" ]; then
    build_id="$(readelf -n "$root/usr/bin/smswire" | awk '/Build ID:/ {print $3}')"
    [ -n "$build_id" ] || fail "the packaged binary has no build id"
    want="./usr/lib/debug/.build-id/${build_id:0:2}/${build_id:2}.debug"
    dpkg-deb -c "$ddeb" | awk '{print $NF}' | grep -qxF "$want" \
        || fail "$ddeb lacks $want for the packaged binary"
    ok "$ddeb holds the debug info of build id $build_id"
else
    echo "check-deb: note: no $ddeb (dbgsym off?)"
fi

step "lintian"
need lintian lintian
# Errors fail; warnings and info are shown. Overrides are shipped in the package with
# their reasons (usr/share/lintian/overrides/smswire).
if ! lintian --fail-on error --display-info --pedantic --show-overrides "$deb" \
    >"$work/lintian" 2>&1; then
    grep -v '^running with root privileges' "$work/lintian" >&2 || true
    fail "lintian reports errors"
fi
grep -v '^running with root privileges' "$work/lintian" || true
ok "lintian: no errors"

if [ "$boot_test" = 1 ]; then
    boot_test "$deb"
fi

if [ "$install_test" = 0 ]; then
    echo "check-deb: all checks passed for $deb (install test not run; see --install)"
    exit 0
fi

# ---------------------------------------------------------------------------------------
# Install test: on this machine, undone at the end (and on failure).
step "install test"
[ "$(id -u)" = 0 ] || fail "--install needs root"
if dpkg-query -W -f '${Status}' smswire 2>/dev/null | grep -q 'installed\|config-files'; then
    fail "smswire is already installed here: refusing to touch it"
fi
! getent passwd smswire >/dev/null || fail "a smswire user already exists: refusing"
! getent group smswire >/dev/null || fail "a smswire group already exists: refusing"
[ ! -e /var/lib/smswire ] || fail "/var/lib/smswire already exists: refusing"
[ ! -e /etc/smswire ] || fail "/etc/smswire already exists: refusing"
if [ -d /run/systemd/system ]; then
    systemd_up=1
    echo "check-deb: systemd runs here: the service will really start"
else
    systemd_up=0
    echo "check-deb: systemd does not run here: the service must not start"
fi

daemon_pid=""
installed=0
undo() {
    if [ -n "$daemon_pid" ]; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    if [ "$installed" = 1 ]; then
        echo "check-deb: undoing the install test (dpkg --purge smswire)" >&2
        dpkg --purge smswire >/dev/null 2>&1 || true
    fi
    cleanup
}
trap undo EXIT

smswire_procs() { pgrep -u smswire -x smswire 2>/dev/null || true; }

dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; installed=1; fail "dpkg -i failed"; }
installed=1
ok "dpkg -i"

uid="$(getent passwd smswire | cut -d: -f3)"
[ -n "$uid" ] || fail "postinst created no smswire user"
[ "$uid" -lt 1000 ] || fail "smswire is not a system user (uid $uid)"
[ "$(getent passwd smswire | cut -d: -f6)" = /var/lib/smswire ] || fail "smswire's home is not /var/lib/smswire"
[ "$(getent passwd smswire | cut -d: -f7)" = /usr/sbin/nologin ] || fail "smswire has a login shell"
[ "$(id -gn smswire)" = smswire ] || fail "smswire's primary group is not smswire"
[ "$(stat -c '%U:%G %a' /var/lib/smswire)" = "smswire:smswire 750" ] \
    || fail "/var/lib/smswire is $(stat -c '%U:%G %a' /var/lib/smswire)"
[ "$(stat -c '%U:%G %a' /etc/smswire/smswire.toml)" = "root:smswire 640" ] \
    || fail "/etc/smswire/smswire.toml is $(stat -c '%U:%G %a' /etc/smswire/smswire.toml)"
[ -L /etc/systemd/system/multi-user.target.wants/smswire.service ] \
    || fail "smswire.service was not enabled (no multi-user.target.wants link)"
ok "user and group smswire (uid $uid), /var/lib/smswire 0750, config root:smswire 0640, unit enabled"

if [ "$systemd_up" = 1 ]; then
    systemctl is-active --quiet smswire || fail "systemd runs but smswire.service is not active"
    ok "smswire.service is active"
else
    [ -z "$(smswire_procs)" ] || fail "a smswire daemon runs although systemd does not"
    ok "no daemon started"
fi

# Installing again runs postinst as an upgrade: nothing may fail or change.
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "reinstalling failed"; }
[ "$(getent passwd smswire | cut -d: -f3)" = "$uid" ] || fail "reinstalling changed the smswire user"
[ "$(dpkg-statoverride --list /etc/smswire/smswire.toml)" = "root smswire 640 /etc/smswire/smswire.toml" ] \
    || fail "reinstalling changed the permissions override of the configuration"
ok "reinstall (upgrade path) is idempotent"

if [ "$systemd_up" = 0 ]; then
    # Run the daemon as systemd would: as smswire, with /run/smswire made for it, on the
    # installed configuration (another port if 8080 is taken here).
    install -d -o smswire -g smswire -m 0750 /run/smswire
    config=/etc/smswire/smswire.toml
    if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then
        config=/run/smswire/check-deb.toml
        sed 's|^listen = "127.0.0.1:8080"|listen = "127.0.0.1:0"|' /etc/smswire/smswire.toml >"$config"
        chgrp smswire "$config"
        chmod 0640 "$config"
        echo "check-deb: 127.0.0.1:8080 is taken here: the daemon listens on a free port"
    fi
    (umask 0027 && exec setpriv --reuid smswire --regid smswire --init-groups \
        env NO_COLOR=1 /usr/bin/smswire serve --config "$config") >"$work/daemon.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 1 100); do
        [ -S /run/smswire/admin.sock ] && break
        kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log" >&2; fail "the daemon exited at start"; }
        sleep 0.1
    done
    [ -S /run/smswire/admin.sock ] || { cat "$work/daemon.log" >&2; fail "no admin socket after 10 s"; }
    [ "$(stat -c '%U:%G %a' /run/smswire/admin.sock)" = "smswire:smswire 660" ] \
        || fail "the admin socket is $(stat -c '%U:%G %a' /run/smswire/admin.sock)"
    ok "daemon runs as smswire; /run/smswire/admin.sock is smswire:smswire 0660"
else
    for _ in $(seq 1 100); do
        [ -S /run/smswire/admin.sock ] && break
        sleep 0.1
    done
fi

# root, through the installed configuration's socket.
/usr/bin/smswire account create check-deb --balance 1 >"$work/account" \
    || fail "smswire account create (as root) failed"
grep -q '^account_id: acc_' "$work/account" || fail "account create printed no account id"
# a member of group smswire reaches the socket (0750 directory, 0660 socket)...
setpriv --reuid nobody --regid nogroup --groups smswire /usr/bin/smswire account list \
    >"$work/list" || fail "a member of group smswire cannot use the admin commands"
grep -q 'check-deb' "$work/list" || fail "account list does not show the new account"
# ...anyone else does not.
if setpriv --reuid nobody --regid nogroup --clear-groups \
    /usr/bin/smswire account list --socket /run/smswire/admin.sock >/dev/null 2>&1; then
    fail "a user outside group smswire can use the admin socket"
fi
ok "admin socket: root and group smswire allowed, others refused"

if [ "$systemd_up" = 0 ]; then
    kill -TERM "$daemon_pid"
    status=0
    wait "$daemon_pid" || status=$?
    daemon_pid=""
    [ "$status" = 0 ] || { cat "$work/daemon.log" >&2; fail "the daemon exited $status on SIGTERM"; }
    ok "SIGTERM: the daemon stopped with status 0"
fi
[ "$(stat -c %U /var/lib/smswire/smswire.redb)" = smswire ] \
    || fail "the data file is not owned by smswire"

dpkg --remove smswire >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg --remove failed"; }
[ ! -e /usr/bin/smswire ] || fail "remove left /usr/bin/smswire"
[ -f /var/lib/smswire/smswire.redb ] || fail "remove deleted the data file"
[ -f /etc/smswire/smswire.toml ] || fail "remove deleted the configuration"
getent passwd smswire >/dev/null || fail "remove deleted the smswire user"
[ -z "$(smswire_procs)" ] || fail "a smswire daemon still runs after remove"
ok "dpkg --remove: binary gone; data, configuration and user kept; nothing runs"

rm -f /run/smswire/check-deb.toml
dpkg --purge smswire >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg --purge failed"; }
installed=0
[ ! -e /var/lib/smswire ] || fail "purge left /var/lib/smswire"
[ ! -e /etc/smswire ] || fail "purge left /etc/smswire: $(ls -A /etc/smswire)"
[ ! -e /run/smswire ] || fail "purge left /run/smswire"
! getent passwd smswire >/dev/null || fail "purge left the smswire user"
! getent group smswire >/dev/null || fail "purge left the smswire group"
! dpkg-statoverride --list /etc/smswire/smswire.toml >/dev/null || fail "purge left the statoverride"
[ ! -e /etc/systemd/system/multi-user.target.wants/smswire.service ] \
    || fail "purge left the multi-user.target.wants link"
! dpkg-query -W smswire >/dev/null 2>&1 || fail "dpkg still knows smswire after purge"
ok "dpkg --purge: data, configuration, user, group and enablement gone"

echo "check-deb: all checks passed for $deb, install test included"
