#!/usr/bin/env bash
# The Debian package, installed and used the way README "Installation" says, on this
# machine: the README's lines run as written; the installed files are checked for owner and
# mode; the installed unit is verified and scored; the installed daemon runs as the
# service user under the unit's settings (without systemd as PID 1: setpriv, a private
# mount namespace with a read-only root, the unit's umask and fd limit); the machine's own
# Postfix, configured by the README's lines, refuses an opted-out recipient, delivers the
# others with the unsubscribe headers, and takes a one-click POST and an unsubscribe mail;
# the manuals render without warnings; the package purges cleanly.
#
# It installs and purges the package and reconfigures the machine's Postfix: run it as
# root on a machine you can throw away. CI does (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "package-test: FAIL: $*" >&2
    if [ -s "${work:-}/daemon.log" ]; then
        echo "package-test: the daemon's log ends:" >&2
        tail -n 20 "$work/daemon.log" >&2
    fi
    exit 1
}
step() { echo "package-test: $*"; }

# Runs COMMAND... until it succeeds, for at most SECONDS, polling.
wait_until() {
    local what=$1 deadline=$((SECONDS + $2))
    shift 2
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for $what"
        sleep 0.1
    done
}

# The indented lines of README.md between <!-- NAME --> and <!-- /NAME -->.
readme_block() {
    awk -v b="<!-- $1 -->" -v e="<!-- /$1 -->" \
        '$0 == b { on = 1; next } $0 == e { on = 0 } on && /^    / { print substr($0, 5) }' README.md
}

# "OWNER:GROUP MODE" of PATH, against what is expected.
expect_stat() {
    local got
    got=$(stat -c '%U:%G %a' "$1") || fail "$1 is missing"
    [ "$got" = "$2" ] || fail "$1 is $got, expected $2"
}

[ "$(id -u)" = 0 ] || fail "it must run as root (it installs the package)"
for program in apt dpkg-statoverride postfix postconf postmap sendmail smtp-sink swaks curl setpriv \
    unshare strace lintian python3 readelf systemd-analyze man; do
    command -v "$program" >/dev/null || fail "$program is not installed"
done

work=$(mktemp -d /var/tmp/optout-package-test.XXXXXX)
chmod 0755 "$work" # the sink writes as nobody
# On a file system of its own (/dev/shm), which stays writable when / is made read-only
# for the daemon (a file open for writing would keep / from being remounted).
traces=$(mktemp -d /dev/shm/optout-package-trace.XXXXXX)
daemon_pid=
listener_pid=
sink_pid=
cleanup() {
    pkill -x -u optout-milter optout-milter 2>/dev/null || true
    for pid in $daemon_pid $listener_pid $sink_pid; do
        kill "$pid" 2>/dev/null || true
    done
    postfix stop >/dev/null 2>&1 || true
    rm -rf "$traces"
}
trap cleanup EXIT

# A machine that ran this before: start from no package and no store.
if dpkg-query -W -f '${Status}' optout-milter 2>/dev/null | grep -q installed; then
    step "purging the package left by an earlier run"
    dpkg --purge optout-milter >/dev/null
fi
rm -rf /var/lib/optout-milter /var/spool/postfix/optout-milter

# The machine's own Postfix, as Debian's "Internet Site" answer sets it up, logging to a
# file (no syslog here), started.
step "setting up the machine's Postfix as an Internet Site"
postfix stop >/dev/null 2>&1 || true
printf '%s\n' "postfix postfix/main_mailer_type select Internet Site" \
    "postfix postfix/mailname string mta.example.net" |
    debconf-set-selections
rm -f /etc/postfix/main.cf
DEBIAN_FRONTEND=noninteractive dpkg-reconfigure -f noninteractive postfix >/dev/null 2>&1
rm -f /etc/postfix/transport* /etc/postfix/optout-recipients*
postsuper -d ALL >/dev/null 2>&1 || true # nothing queued by an earlier run
maillog=$work/postfix.log
postconf -e "maillog_file = $maillog" 'maillog_file_prefixes = /var, /dev/stdout, /tmp' \
    'inet_interfaces = loopback-only'
postfix start >/dev/null 2>&1 || fail "postfix did not start"
wait_until "Postfix to listen on port 25" 30 bash -c ': 2>/dev/null >/dev/tcp/127.0.0.1/25'

step "README: install"
install=$(readme_block install)
[ -n "$install" ] || fail "README.md has no install block"
DEBIAN_FRONTEND=noninteractive bash -euxc "$install" </dev/null

step "lintian, Debian's own checks of the package"
# Every error and warning fails; the one tag left out asks for the bug that announced
# the package to Debian's archive, where it has not gone.
lintian --tag-display-limit 0 --fail-on error,warning \
    --suppress-tags initial-upload-closes-no-bugs target/debian/optout-milter_*.deb ||
    fail "lintian found problems"

step "checking the installed files"
dpkg-query -W -f '${Status}\n' optout-milter | grep -qx 'install ok installed' ||
    fail "the package is not installed"
passwd=$(getent passwd optout-milter) || fail "no user optout-milter"
IFS=: read -r _ _ uid _ _ home shell <<<"$passwd"
[ "$shell" = /usr/sbin/nologin ] || fail "optout-milter's shell is $shell"
[ "$home" = /var/lib/optout-milter ] || fail "optout-milter's home is $home"
[ "$uid" -lt 1000 ] || fail "optout-milter is no system user (uid $uid)"
expect_stat /usr/bin/optout-milter "root:root 755"
if readelf -S /usr/bin/optout-milter | grep -q '\.debug_info'; then
    fail "/usr/bin/optout-milter is not stripped"
fi
expect_stat /etc/optout-milter "root:optout-milter 750"
expect_stat /etc/optout-milter/optout-milter.toml "root:optout-milter 640"
expect_stat /etc/optout-milter/token-1.key "root:optout-milter 640"
[ "$(stat -c %s /etc/optout-milter/token-1.key)" -ge 32 ] || fail "the token key is short"
expect_stat /var/lib/optout-milter "optout-milter:optout-milter 750"
expect_stat /var/lib/optout-milter/consent.db "optout-milter:optout-milter 600"
dpkg-query -W -f '${Conffiles}\n' optout-milter | grep -q ' /etc/optout-milter/optout-milter.toml ' ||
    fail "the config is no conffile"
unit=/usr/lib/systemd/system/optout-milter.service
expect_stat "$unit" "root:root 644"
[ -L /etc/systemd/system/multi-user.target.wants/optout-milter.service ] ||
    fail "the unit is not enabled"
for file in /usr/share/man/man8/optout-milter.8.gz /usr/share/man/man5/optout-milter.toml.5.gz \
    /usr/share/bash-completion/completions/optout-milter \
    /usr/share/zsh/vendor-completions/_optout-milter \
    /usr/share/fish/vendor_completions.d/optout-milter.fish \
    /usr/share/doc/optout-milter/README.md /usr/share/doc/optout-milter/copyright \
    /usr/share/doc/optout-milter/changelog.gz /usr/share/doc/optout-milter/changelog.Debian.gz \
    /usr/share/doc/optout-milter/examples/postfix/main.cf; do
    expect_stat "$file" "root:root 644"
done
bash -n /usr/share/bash-completion/completions/optout-milter

step "installing the same package again: the key and the store stay"
key_sum=$(sha256sum /etc/optout-milter/token-1.key)
optout-milter consent set frank@example.org --value n --evidence "before the reinstall" >/dev/null
dpkg -i target/debian/optout-milter_*.deb >/dev/null
[ "$(sha256sum /etc/optout-milter/token-1.key)" = "$key_sum" ] || fail "the reinstall replaced the key"
optout-milter consent get frank@example.org | grep -q 'before the reinstall' ||
    fail "the reinstall lost the store"
expect_stat /etc/optout-milter/optout-milter.toml "root:optout-milter 640"

step "checking the installed unit and manuals"
# verify also checks that the manuals and files of Documentation= exist.
verify=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"
score=$(systemd-analyze security --offline=true --no-pager "$unit" |
    sed -n 's/.*Overall exposure level for optout-milter.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no security score"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "exposure $score is above 2.0"
step "exposure level $score"
for page in optout-milter.8 optout-milter.toml.5; do
    section=${page##*.}
    warnings=$(man --warnings -l "/usr/share/man/man$section/$page.gz" 2>&1 >/dev/null)
    [ -z "$warnings" ] || fail "man $page: $warnings"
    man -w "$section" "${page%.*}" >/dev/null || fail "man cannot find $page"
done
runuser -u optout-milter -- optout-milter check-config >/dev/null
# Root's commands read the key too (in the service's own group, not in root's).
optout-milter token mint jane@example.org --list weekly-news | grep -q 'https://' ||
    fail "root cannot mint a token"

# The unit's settings, read from the installed unit itself.
setting() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
user=$(setting User)
group=$(setting Group)
umask=$(setting UMask)
nofile=$(setting LimitNOFILE)
exec_start=$(setting ExecStart)
state=/var/lib/$(setting StateDirectory)
runtime=/run/$(setting RuntimeDirectory)
# ReadWritePaths=, without the "-" that lets a missing path be ignored.
writable=$(sed -n 's/^ReadWritePaths=-\{0,1\}//p' "$unit" | tr '\n' ' ')
[ "$(setting ProtectSystem)" = strict ] || fail "the unit no longer says ProtectSystem=strict"

# systemd makes the runtime directory for the service; sd_notify messages come to an
# abstract socket (mount namespaces do not hide those).
install -d -o "$user" -g "$group" -m 0755 "$runtime"
notify=$work/notify.log
python3 - "$notify" <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0optout-package-test")
with open(sys.argv[1], "a", buffering=1) as log:
    while True:
        log.write(s.recv(4096).decode() + "\n")
EOF
listener_pid=$!
wait_until "the notify socket" 10 grep -q optout-package-test /proc/net/unix

# Starts the installed daemon as the unit would and waits for its READY=1:
# ProtectSystem=strict (all read-only but the state and runtime directories and the
# ReadWritePaths that exist),
# PrivateTmp, ProtectHome, NoNewPrivileges, no capabilities, the unit's user, group,
# umask and fd limit, working directory / and the environment systemd gives. Traced by
# strace, so that the system calls it made can be held to the unit's filters.
starts=0
start_daemon() {
    starts=$((starts + 1))
    : >"$notify"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin NOTIFY_SOCKET=@optout-package-test \
        HOME="$home" USER="$user" LOGNAME="$user" SHELL=/usr/sbin/nologin \
        STATE_DIRECTORY="$state" RUNTIME_DIRECTORY="$runtime" \
        unshare --mount --propagation private -- sh -euc '
            state=$1 runtime=$2 user=$3 group=$4 umask=$5 nofile=$6 writable=$7
            trace=$8
            shift 8
            for dir in "$state" "$runtime"; do mount --bind "$dir" "$dir"; done
            for dir in $writable; do
                if [ -e "$dir" ]; then mount --bind "$dir" "$dir"; fi
            done
            mount -t tmpfs -o mode=1777 tmpfs /tmp
            mount -t tmpfs -o mode=1777 tmpfs /var/tmp
            for dir in /home /root /run/user; do
                if [ -d "$dir" ]; then mount -t tmpfs -o ro,mode=0755 tmpfs "$dir"; fi
            done
            mount -o remount,bind,ro /
            cd /
            umask "$umask"
            # A machine whose hard limit is lower keeps its own (raising it needs a
            # capability that containers may lack; systemd has it).
            ulimit -n "$nofile" 2>/dev/null || ulimit -n "$(ulimit -H -n)"
            exec strace -f -qq -o "$trace" \
                setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs \
                --inh-caps=-all --bounding-set=-all -- "$@"
        ' sh "$state" "$runtime" "$user" "$group" "$umask" "$nofile" "$writable" \
        "$traces/strace.$starts" $exec_start \
        >>"$work/daemon.log" 2>&1 &
    daemon_pid=$!
    wait_until "READY=1 from the daemon" 60 grep -qx READY=1 "$notify"
    pgrep -x -u "$user" optout-milter >/dev/null || fail "the daemon does not run as $user"
}

# Sends SIGNAL to the daemon (not to strace, which traces it).
signal_daemon() {
    pkill "-$1" -x -u "$user" optout-milter
}

# SIGTERM, as systemctl stop sends: STOPPING=1 and exit 0.
stop_daemon() {
    signal_daemon TERM
    wait "$daemon_pid" || fail "the daemon exited with status $?"
    daemon_pid=
    grep -qx STOPPING=1 "$notify" || fail "no STOPPING=1"
}

step "starting the installed daemon as $user, as the unit would"
start_daemon

step "README: Postfix"
# A stand-in for the internet: mail for example.org goes to a local smtp-sink.
sink=$work/sink
install -d -o nobody "$sink"
smtp-sink -u nobody -d "$sink/msg." 127.0.0.1:2526 128 &
sink_pid=$!
postfix_lines=$(readme_block postfix)
[ -n "$postfix_lines" ] || fail "README.md has no postfix block"
bash -euxc "$postfix_lines" </dev/null
echo 'example.org smtp:[127.0.0.1]:2526' >>/etc/postfix/transport
postmap /etc/postfix/transport
postfix reload >/dev/null 2>&1
# The README's milter lines say what deploy/postfix/main.cf says.
while read -r key value; do
    [ "$(postconf -h "$key")" = "$value" ] ||
        fail "README sets $key to '$(postconf -h "$key")', deploy/postfix/main.cf to '$value'"
done < <(sed -n 's/^\([a-z_]*\) = \(.*\)$/\1 \2/p' deploy/postfix/main.cf)

# SMTP to the machine's Postfix; prints swaks's transcript.
send() {
    swaks --server 127.0.0.1 --port 25 --helo app.example.net "$@" 2>&1 || true
}
# The file the sink wrote for mail to ADDRESS, if any.
delivered() {
    grep -lx "X-Rcpt-Args: <$1>.*" "$sink"/msg.* 2>/dev/null | head -n 1
}
has_delivery() {
    [ -n "$(delivered "$1")" ]
}
consent() {
    optout-milter consent get "$1"
}

step "an opt-out by the CLI: refused at RCPT, the other recipient gets the headers"
optout-milter consent set jane@example.org --value n --scope weekly-news --evidence "package test"
# The CLI ran as root; the store's files must still all be the service's.
stray=$(find "$state" ! -user "$user")
[ -z "$stray" ] || fail "files in $state not owned by $user: $stray"
transcript=$(send --from news@example.com --to jane@example.org,bob@example.org \
    --header "Subject: Weekly news")
grep -q '<\*\* *550 5\.7\.1' <<<"$transcript" || fail "jane was not refused: $transcript"
wait_until "the newsletter to bob" 60 has_delivery bob@example.org
message=$(cat "$(delivered bob@example.org)")
[ -z "$(delivered jane@example.org)" ] || fail "jane got the newsletter"
grep -q '^List-Unsubscribe-Post: List-Unsubscribe=One-Click' <<<"$message" ||
    fail "no List-Unsubscribe-Post: $message"
link=$(grep -o '<https://unsubscribe\.example\.com/u/[^>]*>' <<<"$message" | tr -d '<>')
[ -n "$link" ] || fail "no one-click link: $message"

step "one-click: bob's POST is recorded and his next newsletter refused"
status=$(curl -s -o /dev/null -w '%{http_code}' --data 'List-Unsubscribe=One-Click' \
    "http://127.0.0.1:8080/u/${link##*/u/}")
[ "$status" = 200 ] || fail "one-click answered $status"
consent bob@example.org | grep -q "$(printf '\tweekly-news\tn\t')" || fail "bob: $(consent bob@example.org)"
transcript=$(send --from news@example.com --to bob@example.org --header "Subject: Weekly news")
grep -q '<\*\* *550 5\.7\.1' <<<"$transcript" || fail "bob was not refused: $transcript"

step "mailto: carol's unsubscribe mail, taken by the milter on its way in"
send --from news@example.com --to carol@example.org --header "Subject: Weekly news" >/dev/null
wait_until "the newsletter to carol" 60 has_delivery carol@example.org
mailto=$(grep -o 'mailto:unsubscribe+[^?>]*@example\.com' "$(delivered carol@example.org)")
[ -n "$mailto" ] || fail "no mailto link for carol"
transcript=$(send --from carol@example.org --to "${mailto#mailto:}" --header "Subject: unsubscribe")
grep -q '<- *250 .*queued' <<<"$transcript" || fail "the unsubscribe mail was not taken: $transcript"
wait_until "carol's opt-out from her mail" 60 \
    bash -c 'optout-milter consent get carol@example.org | grep -qP "\tweekly-news\tn\t"'
# Only the unsubscribe address is received for that domain.
transcript=$(send --from carol@example.org --to someone@example.com)
grep -q '<\*\* *550 5\.1\.1' <<<"$transcript" || fail "another recipient was taken: $transcript"

step "reload (ExecReload) and restart"
signal_daemon HUP
wait_until "READY=1 after the reload" 30 \
    bash -c "grep -A2 -x RELOADING=1 '$notify' | grep -qx READY=1"
stop_daemon
# Root's command while the service is stopped: SQLite makes its journal files, and they
# must stay the service's, or it could not write when it starts.
optout-milter consent set erin@example.org --value n --evidence "while stopped" >/dev/null
stray=$(find "$state" ! -user "$user")
[ -z "$stray" ] || fail "files in $state not owned by $user: $stray"
# The milter took carol's mail itself ([intake] milter = true, which needs a restart to
# change); without it, the README's transport map takes them to LMTP.
sed -i 's/^milter = true$/milter = false/' /etc/optout-milter/optout-milter.toml
grep -qx 'milter = false' /etc/optout-milter/optout-milter.toml || fail "no [intake] milter key"
start_daemon

step "mailto over LMTP: dave's unsubscribe mail goes by the README's transport map"
send --from news@example.com --to dave@example.org --header "Subject: Weekly news" >/dev/null
wait_until "the newsletter to dave" 60 has_delivery dave@example.org
mailto=$(grep -o 'mailto:unsubscribe+[^?>]*@example\.com' "$(delivered dave@example.org)")
send --from dave@example.org --to "${mailto#mailto:}" --header "Subject: unsubscribe" >/dev/null
wait_until "dave's opt-out by LMTP" 60 \
    bash -c 'optout-milter consent get dave@example.org | grep -qP "\tweekly-news\tn\t"'
wait_until "Postfix's log of the delivery to LMTP" 30 grep -q \
    "to=<${mailto#mailto:}>, relay=127.0.0.1\[127.0.0.1\]:2424,.*status=sent" "$maillog"
stop_daemon

step "README: a unix socket inside Postfix's chroot"
chroot_lines=$(readme_block chroot)
[ -n "$chroot_lines" ] || fail "README.md has no chroot block"
bash -euxc "$chroot_lines" </dev/null
start_daemon
postfix reload >/dev/null 2>&1
expect_stat /var/spool/postfix/optout-milter/milter.sock "optout-milter:postfix 660"
transcript=$(send --from news@example.com --to jane@example.org --header "Subject: Weekly news")
grep -q '<\*\* *550 5\.7\.1' <<<"$transcript" || fail "jane was not refused by the socket: $transcript"
# A local submission: Postfix's cleanup, chrooted too, asks the milter at the same socket.
printf 'Subject: Weekly news\n\nHello\n' | sendmail -f news@example.com grace@example.org
wait_until "the local newsletter to grace" 60 has_delivery grace@example.org
grep -q '^List-Unsubscribe-Post: List-Unsubscribe=One-Click' "$(delivered grace@example.org)" ||
    fail "the local submission got no unsubscribe headers"
stop_daemon
[ ! -e /var/spool/postfix/optout-milter/milter.sock ] || fail "the socket is left after the stop"

if grep -q 'Read-only file system\|Permission denied' "$work/daemon.log"; then
    fail "the daemon met its sandbox: $(grep 'Read-only\|Permission denied' "$work/daemon.log")"
fi

step "the system calls the daemon made, against the unit's filters"
# What systemd would refuse: calls outside SystemCallFilter (expanded by systemd-analyze
# itself), sockets outside RestrictAddressFamilies, and memory both writable and
# executable (MemoryDenyWriteExecute). Under the unit such a call fails with EPERM.
python3 - "$unit" "$traces"/strace.* <<'EOF' || fail "the daemon needs what its unit forbids"
import re, subprocess, sys

unit, traces = sys.argv[1], sys.argv[2:]
settings = {}
for line in open(unit):
    key, _, value = line.strip().partition("=")
    settings.setdefault(key, []).append(value)
listing = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"],
                         capture_output=True, text=True, check=True).stdout
groups, group = {}, None
for line in listing.splitlines():
    item = line.strip()
    if not item or item.startswith("#"):
        continue
    if not line.startswith(" "):
        group = groups.setdefault(item, [])
    else:
        group.append(item)
def expand(name):
    return set().union(*(expand(i) for i in groups[name])) if name.startswith("@") else {name}
allowed = None
for value in settings["SystemCallFilter"]:
    deny = value.startswith("~")
    names = set().union(*(expand(n) for n in value.lstrip("~").split()))
    allowed = names if allowed is None else (allowed - names if deny else allowed | names)
families = set(settings["RestrictAddressFamilies"][-1].split())
used, problems = set(), []
for trace in traces:
    daemon = False # setpriv's own calls come first; systemd filters only the service's
    for line in open(trace):
        daemon = daemon or 'execve("/usr/bin/optout-milter"' in line
        call = re.match(r"\d+\s+([a-z_0-9]+)\((.*)", line)
        if not daemon or not call:
            continue
        name, args = call.groups()
        used.add(name)
        family = re.match(r"(AF_[A-Z0-9]+)", args)
        if name == "socket" and family and family.group(1) not in families:
            problems.append("a socket outside RestrictAddressFamilies: " + line.strip())
        if name in ("mmap", "mprotect") and "PROT_WRITE" in args and "PROT_EXEC" in args:
            problems.append("writable and executable memory: " + line.strip())
problems += ["a system call outside SystemCallFilter: " + n for n in sorted(used - allowed)]
for problem in problems:
    print("package-test:", problem, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"package-test: {len(used)} different system calls, all allowed by the unit")
EOF

step "an upgrade keeps the key, the store, the edited config and its ownership"
# The same program as the next Debian revision: dpkg runs the upgrade paths of the
# maintainer scripts (prerm upgrade, postinst configure with the old version).
cargo deb --no-build --strip --deb-revision 2 --output "$work/" >/dev/null
config_sum=$(sha256sum /etc/optout-milter/optout-milter.toml)
dpkg -i "$work"/optout-milter_*-2_*.deb >/dev/null </dev/null
dpkg-query -W -f '${Version}' optout-milter | grep -q -- '-2$' || fail "the upgrade did not install"
[ "$(sha256sum /etc/optout-milter/token-1.key)" = "$key_sum" ] || fail "the upgrade replaced the key"
[ "$(sha256sum /etc/optout-milter/optout-milter.toml)" = "$config_sum" ] ||
    fail "the upgrade replaced the edited config"
expect_stat /etc/optout-milter/optout-milter.toml "root:optout-milter 640"
expect_stat /var/lib/optout-milter/consent.db "optout-milter:optout-milter 600"
optout-milter consent get dave@example.org | grep -qP "\tweekly-news\tn\t" ||
    fail "the upgrade lost dave's opt-out"
runuser -u optout-milter -- optout-milter check-config >/dev/null

step "purge"
purge=$(DEBIAN_FRONTEND=noninteractive apt-get purge -y -q optout-milter 2>&1) || fail "$purge"
grep -q 'kept /var/lib/optout-milter' <<<"$purge" || fail "purge did not say it kept the store"
! dpkg-query -W -f '${Status}' optout-milter 2>/dev/null | grep -q installed ||
    fail "the package is still installed"
for path in /etc/optout-milter /usr/bin/optout-milter "$unit" \
    /etc/systemd/system/multi-user.target.wants/optout-milter.service \
    /usr/share/man/man8/optout-milter.8.gz /usr/share/doc/optout-milter "$runtime"; do
    [ ! -e "$path" ] || fail "$path is left after purge"
done
[ -z "$(dpkg-statoverride --list | grep optout-milter || true)" ] ||
    fail "statoverrides are left after purge"
[ -s "$state/consent.db" ] || fail "purge removed the consent store"
step "passed"
