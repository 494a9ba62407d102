#!/usr/bin/env bash
# The one list of Debian packages the tests (and the packaging check) need.
#
#   tests/services/packages.sh [tests|packaging]
#
# As root, installs whichever of them are missing (apt-get). As another user,
# prints the single `apt-get install` line that would install them and exits
# 2, so nothing is built before the machine is ready. Exits 0 when everything
# is already there. tests/run-all.sh and .ci/run both call this script; no
# other file keeps a copy of the list.
set -euo pipefail

group="${1:-tests}"

case "$group" in
  tests)
    # Databases and Redis for the forum and cluster tests, PHP to write
    # config.php as Flarum's installer does, nginx for the reverse-proxy tests,
    # openssl for test certificates, systemd for `systemd-analyze verify`,
    # Chromium for the dashboard test, curl for raw HTTP requests, gcc to
    # link the tests (and to compile the SQLite driver's C) on a fresh
    # Debian, where Rust's installer brings no linker.
    packages=(mariadb-server postgresql redis-server php-cli sqlite3 nginx openssl systemd chromium curl gcc)
    # The conformance suites run on Node.js and Python; machines that ship
    # their own (e.g. from nvm or pyenv) keep them.
    command -v node >/dev/null || packages+=(nodejs)
    command -v npm >/dev/null || packages+=(npm)
    # The PyPI packages go into a virtual environment (tests/run-all.sh),
    # which Debian's python3 makes with python3-venv.
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3-venv)
    ;;
  packaging)
    # lintian judges the .deb, man-db renders the man page, systemd verifies
    # the installed unit, bash-completion gives completions their folder, PHP
    # evaluates the config.php files `check` judges as the service.
    packages=(lintian man-db systemd bash-completion php-cli)
    ;;
  *)
    echo "usage: $0 [tests|packaging]" >&2
    exit 2
    ;;
esac

missing=()
for package in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)"
  [ "$status" = "install ok installed" ] || missing+=("$package")
done

[ "${#missing[@]}" -eq 0 ] && exit 0

line="apt-get install -y ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "the $group need Debian packages that are not installed; as root, run: apt-get update && $line" >&2
  exit 2
fi

echo "installing the Debian packages the $group need: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq ${missing[*]} >/dev/null
