#!/usr/bin/env bash
# Checks the artefacts packaging/build.sh made, as an admin would meet them:
# lintian's verdict on the .deb; `dpkg -i`; the installed binary, unit, man
# page and completions; `flarum-ws check` against a SQLite forum root (named
# in /etc/default/flarum-ws, as the service reads it); then
# `dpkg --purge` leaves none of the package's files behind. Then the
# service's life under a real systemd (booted in namespaces of its own):
# installed over an older version while running, it is restarted; `apt
# remove` stops it; `apt purge` leaves no link behind; with
# flarum-ws-listen.socket on, no trigger is refused through restarts and
# upgrades. Also unpacks the
# tarball and runs the binary in it, and checks the newest glibc symbol the
# binaries need against the floor the README states (2.17). Run as root,
# after build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "packaging/verify.sh installs a package: run it as root" >&2; exit 2; }
tests/services/packages.sh packaging

# Absolute: commands run inside another mount namespace start in its /.
out="$(pwd)/target/package"
deb="$(ls "$out"/flarum-ws_*_amd64.deb)"
tarball="$(ls "$out"/flarum-ws-*-x86_64-unknown-linux-gnu.tar.gz)"
failed=0
fail() { echo "FAIL: $*" >&2; failed=1; }
pass() { echo "ok: $*"; }

echo "== lintian $deb"
# Errors and warnings fail; the one overridden tag is explained in
# packaging/lintian-overrides. Informational tags are printed for the record.
lintian --fail-on error,warning "$deb" || fail "lintian reported errors or warnings"
lintian --pedantic -I "$deb" || true

echo "== glibc floor"
# The binaries are linked against glibc 2.17 (packaging/build.sh): no symbol
# they need may be newer, and the package must not ask for a newer libc6.
floor=GLIBC_2.17
newest_glibc() { objdump -T "$1" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1; }
within_floor() { [ "$(printf '%s\n%s\n' "$1" "$floor" | sort -V | tail -1)" = "$floor" ]; }
extracted="$(mktemp -d)"
dpkg-deb -x "$deb" "$extracted"
glibc="$(newest_glibc "$extracted/usr/bin/flarum-ws")"
within_floor "$glibc" && pass "the packaged binary needs $glibc at most (floor $floor)" \
  || fail "the packaged binary needs $glibc, above the floor $floor: update README and INSTALL, or the build"
rm -rf "$extracted"
depends="$(dpkg-deb -f "$deb" Depends)"
[[ "$depends" == *"libc6 (>= 2.17)"* ]] && pass "Depends: $depends" || fail "the package depends on $depends, not libc6 (>= 2.17)"

echo "== dpkg -i"
dpkg --purge flarum-ws >/dev/null 2>&1 || true
dpkg -i "$deb"
files="$(mktemp)"
dpkg -L flarum-ws | while read -r path; do [ -f "$path" ] && echo "$path"; done >"$files"
echo "the package installed $(wc -l <"$files") files"

version="$(flarum-ws --version)"
[[ "$version" == "flarum-ws "* ]] && pass "flarum-ws --version: $version" || fail "flarum-ws --version printed: $version"
[ "$(command -v flarum-ws)" = /usr/bin/flarum-ws ] && pass "on PATH at /usr/bin/flarum-ws" || fail "flarum-ws is not /usr/bin/flarum-ws"

unit=/lib/systemd/system/flarum-ws.service
[ -f "$unit" ] || unit=/usr/lib/systemd/system/flarum-ws.service
analysis="$(systemd-analyze verify --man=no "$unit" 2>&1 | grep flarum-ws.service || true)"
[ -z "$analysis" ] && pass "systemd-analyze verify $unit: nothing to say" || fail "systemd-analyze: $analysis"
grep -q '^ExecStart=/usr/bin/flarum-ws serve' "$unit" && pass "the unit runs /usr/bin/flarum-ws" || fail "the unit's ExecStart"
grep -q '^EnvironmentFile=-/etc/default/flarum-ws' "$unit" && pass "the unit reads /etc/default/flarum-ws" || fail "the unit's EnvironmentFile"
dpkg-query --showformat='${Conffiles}\n' --show flarum-ws | grep -q /etc/default/flarum-ws \
  && pass "/etc/default/flarum-ws is a conffile" || fail "/etc/default/flarum-ws is not a conffile"
[ ! -e /etc/systemd/system/multi-user.target.wants/flarum-ws.service ] \
  && pass "the service is not enabled on install" || fail "installing enabled the service"

man_page="$(man -l /usr/share/man/man1/flarum-ws.1.gz 2>/dev/null | col -b)"
grep -q 'flarum-ws' <<<"$man_page" && grep -q 'check' <<<"$man_page" \
  && pass "man -l renders flarum-ws(1) ($(wc -l <<<"$man_page") lines)" || fail "man page did not render"
for page in serve check config trigger nginx-snippet; do
  [ -f "/usr/share/man/man1/flarum-ws-$page.1.gz" ] || fail "no man page flarum-ws-$page(1)"
done
for completion in /usr/share/bash-completion/completions/flarum-ws \
  /usr/share/zsh/vendor-completions/_flarum-ws /usr/share/fish/vendor_completions.d/flarum-ws.fish; do
  grep -q 'nginx-snippet' "$completion" && pass "completion $completion" || fail "missing or empty $completion"
done
[ -f /usr/share/doc/flarum-ws/examples/flarum-ws.example.yaml ] && [ -f /usr/share/doc/flarum-ws/copyright ] \
  && pass "docs and copyright in /usr/share/doc/flarum-ws" || fail "docs under /usr/share/doc/flarum-ws"
python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["panels"] else 1)' /usr/share/doc/flarum-ws/examples/grafana-dashboard.json \
  && pass "the Grafana board in /usr/share/doc/flarum-ws/examples" || fail "no Grafana board under /usr/share/doc/flarum-ws/examples"

# write_forum ROOT PORT: a Flarum 1 forum on SQLite with the Kyrne
# extension's settings, serving on PORT.
write_forum() {
  cat >"$1/config.php" <<'PHP'
<?php return array (
  'debug' => false,
  'database' => 
  array (
    'driver' => 'sqlite',
    'database' => 'storage/flarum.sqlite',
    'prefix' => '',
    'foreign_key_constraints' => true,
  ),
  'url' => 'http://forum.localhost',
  'paths' => 
  array (
    'api' => 'api',
    'admin' => 'admin',
  ),
);
PHP
  python3 - "$1/storage/flarum.sqlite" "$2" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute('CREATE TABLE settings ("key" varchar(100) NOT NULL PRIMARY KEY, "value" text NULL)')
db.executemany('INSERT INTO settings VALUES (?, ?)', [
    ('kyrne-websocket.app_id', '4242'),
    ('kyrne-websocket.app_key', 'packagekey0123456789abcdefghijkl'),
    ('kyrne-websocket.app_secret', 'packagesecret0123456789abcdefghi'),
    ('kyrne-websocket.app_port', sys.argv[2]),
    ('kyrne-websocket.app_host', '127.0.0.1'),
])
db.commit()
PY
}

echo "== flarum-ws check in a SQLite forum root"
# Not under /tmp: the unit's PrivateTmp=yes hides /tmp from the service.
forum=/var/lib/flarum-ws-verify
rm -rf "$forum"
mkdir -p "$forum/storage"
write_forum "$forum" 36183
# check judges as the installed service runs: with the shipped
# /etc/default/flarum-ws (FLARUM_WS_ROOT=/var/www/flarum, no forum there) it
# fails, even run from the forum's root; with the root set there, as the
# README says, it passes from anywhere.
if (cd "$forum" && flarum-ws check >/dev/null); then
  fail "flarum-ws check passed although the service's FLARUM_WS_ROOT names no forum"
else
  pass "flarum-ws check fails while /etc/default/flarum-ws names no forum"
fi
sed -i "s|^FLARUM_WS_ROOT=.*|FLARUM_WS_ROOT=$forum|" /etc/default/flarum-ws
# The unit's ProtectSystem=strict leaves the SQLite folder read-only until a
# drop-in names it, as the unit's comment and check's fix say.
if (cd / && flarum-ws check || true) | grep -q 'ReadWritePaths='; then
  pass "flarum-ws check fails on the SQLite folder the sandbox keeps read-only"
else
  fail "flarum-ws check did not name ReadWritePaths for the SQLite folder"
fi
mkdir -p /etc/systemd/system/flarum-ws.service.d
printf '[Service]\nReadWritePaths=%s/storage\n' "$forum" >/etc/systemd/system/flarum-ws.service.d/sqlite.conf
if (cd / && flarum-ws check); then pass "flarum-ws check passes with the forum root in /etc/default/flarum-ws"; else fail "flarum-ws check failed with the forum root in /etc/default/flarum-ws"; fi
rm -rf "$forum" /etc/systemd/system/flarum-ws.service.d

echo "== dpkg --purge"
dpkg --purge flarum-ws
left="$(while read -r path; do [ -e "$path" ] && echo "$path"; done <"$files" || true)"
[ -e /etc/default/flarum-ws ] && left="$left /etc/default/flarum-ws"
[ -z "$left" ] && pass "nothing of the package is left" || fail "left after purge: $left"
rm -f "$files"

echo "== the service under systemd: upgrade, remove, purge"
# systemd as PID 1 of new PID, mount, UTS and network namespaces, with its
# own /run, udev and systemd-tmpfiles masked (its boot-time clean-up of /tmp
# would empty this machine's /tmp, where the checkout itself may be), booted
# to basic.target so that no other package's service starts. Commands run inside it with `inside`. A
# policy-rc.d (container images ship one that forbids every start and stop)
# is hidden inside: a stock Debian has none, and the maintainer scripts
# should act as they do there.
unshare --fork --pid --mount --uts --net --mount-proc --propagation private /bin/sh -c '
  mount -t tmpfs tmpfs /run
  if [ -e /usr/sbin/policy-rc.d ]; then mount --bind /dev/null /usr/sbin/policy-rc.d; fi
  mkdir -p /run/systemd/system
  for unit in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
      systemd-udev-trigger.service systemd-udev-settle.service tmp.mount \
      systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service \
      systemd-tmpfiles-setup-dev-early.service systemd-tmpfiles-clean.service \
      systemd-tmpfiles-clean.timer; do
    ln -s /dev/null "/run/systemd/system/$unit"
  done
  exec env container=flarum-ws-verify /lib/systemd/systemd --system --unit=basic.target --log-target=null
' &
unshared=$!
systemd_pid=""
for _ in $(seq 100); do
  systemd_pid="$(pgrep -P "$unshared" || true)"
  [ -n "$systemd_pid" ] && [ "$(cat "/proc/$systemd_pid/comm" 2>/dev/null)" = systemd ] && break
  sleep 0.1
done
inside() { nsenter -t "$systemd_pid" -m -p -u -n "$@"; }
stop_systemd() { kill -9 "$systemd_pid" 2>/dev/null || true; wait "$unshared" 2>/dev/null || true; }
# (unshare reports the kill of its child as "sigprocmask unblock failed".)
trap stop_systemd EXIT
for _ in $(seq 600); do
  case "$(inside systemctl is-system-running 2>/dev/null || true)" in
    running | degraded) break ;;
  esac
  sleep 0.1
done
inside ip link set lo up
echo "systemd $(inside systemctl --version | head -1 | cut -d' ' -f2) is $(inside systemctl is-system-running || true)"

# The older version: this package, numbered one revision lower.
older="$out/older"
rm -rf "$older"
mkdir -p "$older"
dpkg-deb -R "$deb" "$older/tree"
current_version="$(dpkg-deb -f "$deb" Version)"
older_version="${current_version%-*}-0"
sed -i "s/^Version: .*/Version: $older_version/" "$older/tree/DEBIAN/control"
dpkg-deb -b "$older/tree" "$older/flarum-ws_${older_version}_amd64.deb" >/dev/null

# A forum the service (www-data, ProtectSystem=strict) can read, with the
# SQLite folder writable as the unit's comment says.
service_forum=/var/lib/flarum-ws-verify
rm -rf "$service_forum"
mkdir -p "$service_forum/storage"
write_forum "$service_forum" 36184
chown -R www-data:www-data "$service_forum"

inside dpkg -i "$older/flarum-ws_${older_version}_amd64.deb" >/dev/null
sed -i "s|^FLARUM_WS_ROOT=.*|FLARUM_WS_ROOT=$service_forum|" /etc/default/flarum-ws
mkdir -p /etc/systemd/system/flarum-ws.service.d
printf '[Service]\nReadWritePaths=%s/storage\n' "$service_forum" >/etc/systemd/system/flarum-ws.service.d/sqlite.conf
inside systemctl daemon-reload
inside systemctl enable --now flarum-ws 2>/dev/null
active="$(inside systemctl is-active flarum-ws || true)"
[ "$active" = active ] && pass "$older_version: systemctl enable --now flarum-ws starts it" \
  || { fail "the service did not start ($active)"; inside journalctl -u flarum-ws --no-pager | tail -20 >&2 || true; }
if inside sh -c "cd / && flarum-ws check --live >/dev/null"; then pass "flarum-ws check --live passes against the running service"; else fail "flarum-ws check --live failed against the running service"; inside sh -c "cd / && flarum-ws check --live" >&2 || true; fi
before="$(inside systemctl show -p MainPID --value flarum-ws)"

inside dpkg -i "$deb" >/dev/null
after="$(inside systemctl show -p MainPID --value flarum-ws)"
active="$(inside systemctl is-active flarum-ws || true)"
[ "$active" = active ] && [ "$after" != "$before" ] && [ "$after" != 0 ] \
  && pass "upgrade $older_version -> $current_version restarted the running service (pid $before -> $after)" \
  || fail "after the upgrade the service is $active with pid $after (was $before)"

echo "== check judged by systemd: the service's environment, user, flags and sandbox"
# Each set-up below once made `check` say "All good" while the service failed
# (or the reverse): it imitated how systemd reads the unit and how PHP sees
# config.php. Now systemd runs the judging part as it runs the service; each
# case is built for real, judged, and undone.
dropins=/etc/systemd/system/flarum-ws.service.d
verdict() { # verdict [DIR [NAME=value...]]: check's JSON findings, run from DIR in a shell with those variables
  local dir="${1:-/}"
  inside env -C "$dir" "${@:2}" flarum-ws check --json 2>>"$older/check-stderr.log" || true
}
finding() { # finding CHECK STATUS TEXT <json: prints "yes: " and the findings of CHECK with STATUS and TEXT, or all findings
  python3 -c 'import json,sys
text = sys.stdin.read()
try:
    checks = json.loads(text)["checks"]
except ValueError:
    sys.exit(print("not JSON: " + text) or 0)
found = [c for c in checks if c["check"] == sys.argv[1] and c["status"] == sys.argv[2] and sys.argv[3] in c["message"] + " " + c.get("fix", "")]
said = lambda c: c["status"] + " " + c["check"] + ": " + c["message"] + (" | fix: " + c["fix"] if c.get("fix") else "")
print("yes: " + "\n     ".join(map(said, found)) if found else json.dumps(checks, indent=1))' "$@"
}
expect() { # expect DESCRIPTION CHECK STATUS TEXT <json: passes when the finding is there, and prints it
  local said; said="$(finding "$2" "$3" "$4")"
  [[ "$said" == "yes: "* ]] && pass "$1"$'\n'"   check said: ${said#yes: }" || fail "$1: no $3 $2 finding with \"$4\" in $said"
}
reload_units() { inside systemctl daemon-reload; }
second=/var/lib/flarum-ws-verify2
rm -rf "$second"; mkdir -p "$second/storage"; write_forum "$second" 36184
# config.php takes the database file from the environment, as forums take
# DB_PASSWORD.
sed -i "s|'database' => 'storage/flarum.sqlite',|'database' => getenv('VERIFY_DB_FILE') ?: 'storage/none.sqlite',|" "$second/config.php"
chown -R www-data:www-data "$second"
# The root on ExecStart=, as a drop-in may put it (an Environment= line would
# lose to /etc/default/flarum-ws: systemd lets environment files override it).
printf '[Service]\nExecStart=\nExecStart=/usr/bin/flarum-ws serve --root %s\nReadWritePaths=%s/storage\n' "$second" "$second" >"$dropins/verify-root.conf"
reload_units
verdict / VERIFY_DB_FILE=storage/flarum.sqlite | expect "1. getenv() set only in root's shell: the service lacks it, and check says so" \
  "service environment" fail "reads VERIFY_DB_FILE, which is set in the shell you ran check from but not for flarum-ws.service"
printf 'VERIFY_DB_FILE=storage/flarum.sqlite\n' >/etc/flarum-ws-verify.env
printf '[Service]\nEnvironmentFile=/etc/flarum-ws-verify.env\n' >"$dropins/verify-envfile.conf"
reload_units
verdict / | expect "1. getenv() set only in the service's environment file: the database is found" database pass reachable
rm -f "$dropins/verify-envfile.conf" "$dropins/verify-root.conf" /etc/flarum-ws-verify.env
reload_units

cp /etc/default/flarum-ws "$older/default"
restore_default() { cp "$older/default" /etc/default/flarum-ws; }
sed -i "s|^FLARUM_WS_ROOT=.*|export FLARUM_WS_ROOT=$service_forum|" /etc/default/flarum-ws
verdict | expect "2. an 'export' line: systemd ignores it, and check names the line" "service environment" fail "does not read \`export\`"
restore_default
sed -i "s|^FLARUM_WS_ROOT=.*|FLARUM_WS_ROOT=$service_forum # the forum|" /etc/default/flarum-ws
verdict | expect "2. a trailing comment is part of the value for systemd: the root is not found" config.php fail "# the forum"
sed -i "s|^FLARUM_WS_ROOT=.*|FLARUM_WS_ROOT=\"$service_forum\" # the forum|" /etc/default/flarum-ws
verdict | expect "2. a comment after a quoted value too" config.php fail "# the forum"
restore_default
printf 'FLARUM_WS_ALLOWED_ORIGINS=http://forum.localhost, http://other.localhost\n' >>/etc/default/flarum-ws
verdict | expect "2. unquoted spaces in a value are kept, as systemd keeps them" origins pass "http://other.localhost"
restore_default
# A secret with a `$`: systemd does not expand it; the running service is
# restarted with it, and --live signs a trigger with what check read.
printf '[Service]\nEnvironment=FLARUM_WS_APP_ID=4242 FLARUM_WS_APP_KEY=packagekey0123456789abcdefghijkl\n' >"$dropins/verify-secret.conf"
printf 'FLARUM_WS_APP_SECRET=s3cr$et9-packagesecret\n' >>/etc/default/flarum-ws
reload_units; inside systemctl restart flarum-ws
if inside sh -c 'cd / && flarum-ws check --live >/dev/null'; then pass "2. a \$ in the secret is kept: check --live's signed trigger is accepted"; else fail "2. check --live failed with a \$ in the secret"; inside sh -c 'cd / && flarum-ws check --live' >&2 || true; fi
restore_default; rm -f "$dropins/verify-secret.conf"; reload_units; inside systemctl restart flarum-ws

# The running service keeps its port: stopped meanwhile, so that only the
# capability decides.
inside systemctl stop flarum-ws
printf '[Service]\nEnvironment=FLARUM_WS_PORT=443\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n' >"$dropins/verify-port.conf"
reload_units
verdict | expect "4. port 443 with AmbientCapabilities= alone fails (the shipped bounding set is empty), and the fix names both lines" \
  port fail "CapabilityBoundingSet=CAP_NET_BIND_SERVICE and AmbientCapabilities=CAP_NET_BIND_SERVICE"
printf 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n' >>"$dropins/verify-port.conf"
reload_units
verdict | expect "4. with both lines the service may bind 443" port pass "443 is free"
rm -f "$dropins/verify-port.conf"; reload_units; inside systemctl start flarum-ws

{ inside setpriv --reuid=nobody --regid=nogroup --clear-groups env -C / flarum-ws check --json 2>/dev/null || true; } \
  | expect "5. a non-root check says it imitates systemd, and why" "service environment" pass "only root may start a check as the service's user"

printf '<?php return ["db" => "storage/flarum.sqlite"];\n' >/etc/flarum-ws-verify-secret.php
chmod 600 /etc/flarum-ws-verify-secret.php
sed -i "s|getenv('VERIFY_DB_FILE') ?: 'storage/none.sqlite'|(require '/etc/flarum-ws-verify-secret.php')['db']|" "$second/config.php"
printf '[Service]\nExecStart=\nExecStart=/usr/bin/flarum-ws serve --root %s\n' "$second" >"$dropins/verify-root.conf"
reload_units
verdict | expect "6. config.php requiring a file only root may read fails as it fails for the service" config.php fail "Permission denied"
rm -f "$dropins/verify-root.conf" /etc/flarum-ws-verify-secret.php
reload_units

printf '[Service]\nExecStart=\nExecStart=/usr/bin/flarum-ws serve --root /var/lib/flarum-ws-elsewhere\n' >"$dropins/verify-exec.conf"
reload_units
verdict | expect "7. a drop-in's ExecStart= --root is the forum judged" config.php fail "/var/lib/flarum-ws-elsewhere"
rm -f "$dropins/verify-exec.conf"; reload_units

verdict "$second" | expect "9. check run in a second forum's folder says the service serves another" forum fail "nothing above is about this forum"

printf 'FLARUM_WS_ROOT=%s\n' "$service_forum" >/etc/flarum-ws-verify.env
printf '[Service]\nEnvironmentFile=\nEnvironmentFile=/etc/flarum-ws-verify.env\n' >"$dropins/verify-reset.conf"
mv /etc/default/flarum-ws "$older/default-moved"
reload_units
verdict | expect "10. a drop-in that resets EnvironmentFile= is judged with its new file" config.php pass "$service_forum/config.php"
mv "$older/default-moved" /etc/default/flarum-ws
rm -f "$dropins/verify-reset.conf" /etc/flarum-ws-verify.env; reload_units
rm -rf "$second"

# Every command loads settings as the service does: run from root's home
# folder, nginx-snippet and trigger take the forum the unit names.
snippet="$(inside env -C /root flarum-ws nginx-snippet 2>/dev/null || true)"
[[ "$snippet" == *"proxy_pass             http://127.0.0.1:36184;"* ]] \
  && pass "nginx-snippet from root's home folder proxies to the service's port (36184)" \
  || fail "nginx-snippet from root's home folder ignored the service's settings: $snippet"
sent="$(inside env -C /root flarum-ws trigger verify-channel verify-event '{}' 2>&1 || true)"
[[ "$sent" == *"sent verify-event on verify-channel"* ]] \
  && pass "trigger from root's home folder is accepted by the running service" \
  || fail "trigger from root's home folder: $sent"

# The fallback's rules against systemd's: the fixture read by the real
# systemd must give what tests/fixtures/environment-file/expected.env0 says
# (the unit test holds flarum-ws's imitation to the same file).
fixture="$PWD/tests/fixtures/environment-file"
if inside systemd-run --wait --pipe --collect --quiet -p EnvironmentFile="$fixture/input" /usr/bin/env -0 \
  | python3 -c 'import sys
got = dict(e.split("=", 1) for e in sys.stdin.buffer.read().decode().split("\0") if "=" in e)
want = dict(e.split("=", 1) for e in open(sys.argv[1], "rb").read().decode().split("\0") if "=" in e)
wrong = {k: (v, got.get(k)) for k, v in want.items() if got.get(k) != v}
sys.exit(print(wrong) or 1 if wrong else 0)' "$fixture/expected.env0"; then
  pass "systemd $(inside systemctl --version | head -1 | cut -d' ' -f2) reads the environment-file fixture as the imitation's test expects"
else
  fail "systemd reads tests/fixtures/environment-file/input otherwise than expected.env0 (the imitation's reference)"
fi

echo "== restarts and upgrades with flarum-ws-listen.socket: the forum's calls wait, none is refused"
# 200 signed triggers a second (a new connection each, as the forum's PHP
# makes them) through a restart, first without the socket unit (the
# baseline, printed), then with it: through systemctl restart and through a
# package downgrade and upgrade (the maintainer scripts restart the
# service, never the socket), none may fail.
# Meanwhile 10 000 tabs are open (packaging/tabs.py), each on a private
# channel, reconnecting at once on 4200 as pusher-js does; they count the
# channel authorizations the forum's PHP would answer per second.
loop() { inside python3 "$PWD/packaging/trigger-loop.py" 36184 4242 packagekey0123456789abcdefghijkl packagesecret0123456789abcdefghi 200 "$1"; }
tabs_for() { inside python3 "$PWD/packaging/tabs.py" 36184 packagekey0123456789abcdefghijkl packagesecret0123456789abcdefghi 10000 120; }
# Told to finish, the tabs wait up to 30 s for every tab to be back.
# Only the Python process (the nsenter around it would die of the signal).
finish_tabs() { pkill -USR1 -f "^python3 $PWD/packaging/tabs.py" || true; wait "$holding"; }
failed_of() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["failed"])' "$1"; }
all_back() { python3 -c 'import json,sys; t = json.loads(sys.argv[1]); sys.exit(0 if t["open_at_end"] == t["tabs"] else 1)' "$1"; }
tabs_for >"$older/without-socket-tabs.json" & holding=$!
sleep 6
loop 6 >"$older/without-socket.json" & looping=$!
sleep 2; inside systemctl restart flarum-ws; wait "$looping"; finish_tabs
echo "without flarum-ws-listen.socket, a restart under 200 triggers/s: $(cat "$older/without-socket.json")"
echo "  with 10 000 tabs: $(cat "$older/without-socket-tabs.json")"
mkdir -p /etc/systemd/system/flarum-ws-listen.socket.d
printf '[Socket]\nListenStream=\nListenStream=0.0.0.0:36184\n' >/etc/systemd/system/flarum-ws-listen.socket.d/port.conf
inside systemctl daemon-reload
inside systemctl stop flarum-ws
inside systemctl enable --now flarum-ws-listen.socket 2>/dev/null
inside systemctl start flarum-ws
[ "$(inside systemctl is-active flarum-ws-listen.socket || true)" = active ] && pass "flarum-ws-listen.socket is active" || fail "flarum-ws-listen.socket did not start"
# Asked of the kernel: the listening socket on the port is held by both
# systemd and the service's process (the journal in this booted systemd
# does not always hold the service's line in time to be read).
holders="$(inside ss -Hltnp "sport = :36184" 2>/dev/null || true)"
case "$holders" in
  *'"systemd"'*'"flarum-ws"'* | *'"flarum-ws"'*'"systemd"'*) pass "the service uses the socket systemd holds" ;;
  *) fail "the service did not take the socket from systemd: $holders" ;;
esac
restarts_status() { python3 -c 'import json,sys; print(next((c["status"] for c in json.load(sys.stdin)["checks"] if c["check"] == "restarts"), "missing"))'; }
if [ "$(inside sh -c "cd / && flarum-ws check --json" | restarts_status)" = pass ]; then
  pass "check: restarts pass with the socket on"
else
  fail "check does not say the socket holds the port"; inside sh -c "cd / && flarum-ws check" >&2 || true
fi
tabs_for >"$older/restart-tabs.json" & holding=$!
sleep 6
loop 8 >"$older/restart.json" & looping=$!
sleep 2; inside systemctl restart flarum-ws; sleep 2; inside systemctl restart flarum-ws; wait "$looping"; finish_tabs
[ "$(failed_of "$(cat "$older/restart.json")")" = 0 ] && pass "two restarts under 200 triggers/s with 10 000 tabs: $(cat "$older/restart.json")" \
  || fail "triggers failed through a restart with the socket: $(cat "$older/restart.json")"
all_back "$(cat "$older/restart-tabs.json")" && pass "  every tab back after the restarts: $(cat "$older/restart-tabs.json")" \
  || fail "tabs missing after the restarts: $(cat "$older/restart-tabs.json")"
tabs_for >"$older/upgrade-tabs.json" & holding=$!
sleep 6
loop 14 >"$older/upgrade.json" & looping=$!
sleep 2; inside dpkg -i "$older/flarum-ws_${older_version}_amd64.deb" >/dev/null; sleep 2; inside dpkg -i "$deb" >/dev/null; wait "$looping"; finish_tabs
[ "$(failed_of "$(cat "$older/upgrade.json")")" = 0 ] && pass "a downgrade and an upgrade under 200 triggers/s with 10 000 tabs: $(cat "$older/upgrade.json")" \
  || fail "triggers failed through a package upgrade with the socket: $(cat "$older/upgrade.json")"
all_back "$(cat "$older/upgrade-tabs.json")" && pass "  every tab back after the upgrade: $(cat "$older/upgrade-tabs.json")" \
  || fail "tabs missing after the upgrade: $(cat "$older/upgrade-tabs.json")"
[ "$(inside systemctl is-active flarum-ws-listen.socket || true)" = active ] && pass "flarum-ws-listen.socket still active after the upgrade" || fail "the upgrade left flarum-ws-listen.socket $(inside systemctl is-active flarum-ws-listen.socket || true)"

inside apt-get remove -y -qq flarum-ws >/dev/null 2>&1
active="$(inside systemctl is-active flarum-ws || true)"
[ "$active" != active ] && pass "apt remove stopped the service ($active)" || fail "apt remove left the service $active"
active="$(inside systemctl is-active flarum-ws-listen.socket || true)"
[ "$active" != active ] && pass "apt remove stopped the socket ($active)" || fail "apt remove left flarum-ws-listen.socket $active"
[ -e /etc/default/flarum-ws ] && pass "apt remove kept /etc/default/flarum-ws" || fail "apt remove deleted the conffile"

rm -rf /etc/systemd/system/flarum-ws.service.d /etc/systemd/system/flarum-ws-listen.socket.d
inside apt-get purge -y -qq flarum-ws >/dev/null 2>&1
[ ! -e /etc/systemd/system/multi-user.target.wants/flarum-ws.service ] \
  && pass "apt purge removed the multi-user.target.wants link" || fail "apt purge left /etc/systemd/system/multi-user.target.wants/flarum-ws.service"
[ ! -e /etc/systemd/system/sockets.target.wants/flarum-ws-listen.socket ] \
  && pass "apt purge removed the sockets.target.wants link" || fail "apt purge left /etc/systemd/system/sockets.target.wants/flarum-ws-listen.socket"
[ ! -e /etc/default/flarum-ws ] && pass "apt purge removed /etc/default/flarum-ws" || fail "apt purge left /etc/default/flarum-ws"
stop_systemd
trap - EXIT
rm -rf "$older" "$service_forum"

echo "== tarball $tarball"
unpacked="$(mktemp -d)"
tar -C "$unpacked" -xzf "$tarball"
top="$unpacked/$(basename "$tarball" .tar.gz)"
for file in flarum-ws INSTALL README.md LICENSE CHANGELOG.md flarum-ws.example.yaml grafana-dashboard.json \
  systemd/flarum-ws.service systemd/flarum-ws-listen.socket systemd/flarum-ws.default man/flarum-ws.1 \
  completions/flarum-ws.bash completions/_flarum-ws completions/flarum-ws.fish; do
  [ -f "$top/$file" ] || fail "the tarball lacks $file"
done
"$top/flarum-ws" --version >/dev/null && pass "the tarball's binary runs" || fail "the tarball's binary"
glibc="$(newest_glibc "$top/flarum-ws")"
within_floor "$glibc" && pass "the tarball's binary needs $glibc at most (floor $floor)" || fail "the tarball's binary needs $glibc, above $floor"
grep -q '^ExecStart=/usr/local/bin/flarum-ws serve' "$top/systemd/flarum-ws.service" \
  && pass "the tarball's unit runs /usr/local/bin/flarum-ws" || fail "the tarball's unit"
rm -rf "$unpacked"

[ "$failed" -eq 0 ] || { echo "packaging check failed" >&2; exit 1; }
echo "packaging check passed"
