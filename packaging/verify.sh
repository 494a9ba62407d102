#!/usr/bin/env bash
# Checks the artefacts packaging/build.sh made, as an admin would meet them:
# lintian's verdict on the .deb; `dpkg -i`; the installed binary, unit, man
# page and completions; `flarum-ws check` against a SQLite forum root (named
# in /etc/default/flarum-ws, as the service reads it); then
# `dpkg --purge` leaves none of the package's files behind. Also unpacks the
# tarball and runs the binary in it, and prints the newest glibc symbol the
# binary needs (the README's baseline). Run as root, after build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "packaging/verify.sh installs a package: run it as root" >&2; exit 2; }
tests/services/packages.sh packaging

out="target/package"
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

echo "== glibc baseline"
glibc="$(objdump -T target/release/flarum-ws | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
echo "newest glibc symbol version the binary needs: $glibc"
[ "$glibc" = "${GLIBC_BASELINE:-GLIBC_2.34}" ] || fail "glibc baseline moved to $glibc: update README and INSTALL"

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

echo "== flarum-ws check in a SQLite forum root"
forum="$(mktemp -d)"
mkdir "$forum/storage"
cat >"$forum/config.php" <<'PHP'
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
python3 - "$forum/storage/flarum.sqlite" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute('CREATE TABLE settings ("key" varchar(100) NOT NULL PRIMARY KEY, "value" text NULL)')
db.executemany('INSERT INTO settings VALUES (?, ?)', [
    ('kyrne-websocket.app_id', '4242'),
    ('kyrne-websocket.app_key', 'packagekey0123456789abcdefghijkl'),
    ('kyrne-websocket.app_secret', 'packagesecret0123456789abcdefghi'),
    ('kyrne-websocket.app_port', '36183'),
])
db.commit()
PY
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
if (cd / && flarum-ws check); then pass "flarum-ws check passes with the forum root in /etc/default/flarum-ws"; else fail "flarum-ws check failed with the forum root in /etc/default/flarum-ws"; fi
rm -rf "$forum"

echo "== dpkg --purge"
dpkg --purge flarum-ws
left="$(while read -r path; do [ -e "$path" ] && echo "$path"; done <"$files" || true)"
[ -e /etc/default/flarum-ws ] && left="$left /etc/default/flarum-ws"
[ -z "$left" ] && pass "nothing of the package is left" || fail "left after purge: $left"
rm -f "$files"

echo "== tarball $tarball"
unpacked="$(mktemp -d)"
tar -C "$unpacked" -xzf "$tarball"
top="$unpacked/$(basename "$tarball" .tar.gz)"
for file in flarum-ws INSTALL README.md LICENSE CHANGELOG.md flarum-ws.example.yaml \
  systemd/flarum-ws.service systemd/flarum-ws.default man/flarum-ws.1 \
  completions/flarum-ws.bash completions/_flarum-ws completions/flarum-ws.fish; do
  [ -f "$top/$file" ] || fail "the tarball lacks $file"
done
"$top/flarum-ws" --version >/dev/null && pass "the tarball's binary runs" || fail "the tarball's binary"
grep -q '^ExecStart=/usr/local/bin/flarum-ws serve' "$top/systemd/flarum-ws.service" \
  && pass "the tarball's unit runs /usr/local/bin/flarum-ws" || fail "the tarball's unit"
rm -rf "$unpacked"

[ "$failed" -eq 0 ] || { echo "packaging check failed" >&2; exit 1; }
echo "packaging check passed"
