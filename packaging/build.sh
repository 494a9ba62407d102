#!/usr/bin/env bash
# Builds the two artefacts an admin installs without a Rust toolchain, from
# the locked dependencies, into target/package/:
#   flarum-ws_<version>-1_amd64.deb                       (cargo deb)
#   flarum-ws-<version>-x86_64-unknown-linux-gnu.tar.gz   (binary, unit, config, docs)
# The man pages and completions are written by the binary itself from its
# clap definitions (`flarum-ws generate`), so they always match its flags.
#
# The binary is linked against glibc 2.17 (cargo-zigbuild, with Zig from
# PyPI's `ziglang` as the C toolchain and linker), so the same file runs on
# every x86_64 Linux from RHEL 7, Debian 8 and Ubuntu 14.04 on;
# packaging/verify.sh checks the floor from its symbols.
# Needs cargo-deb and cargo-zigbuild (`cargo install --locked cargo-deb
# cargo-zigbuild`) and Zig: `python3 -m venv target/zig-venv &&
# target/zig-venv/bin/pip install ziglang` (.ci/run does all three).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo-deb cargo-zigbuild; do
  command -v "$tool" >/dev/null || {
    echo "$tool is not installed: cargo install --locked $tool" >&2
    exit 2
  }
done
[ -x target/zig-venv/bin/python ] && export PATH="$PWD/target/zig-venv/bin:$PATH"
python3 -m ziglang version >/dev/null 2>&1 || {
  echo "Zig is not installed: python3 -m venv target/zig-venv && target/zig-venv/bin/pip install ziglang" >&2
  exit 2
}

metadata="$(cargo metadata --no-deps --format-version 1 --locked)"
version="$(python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "flarum-ws"))' <<<"$metadata")"
# Cargo's build folder, CARGO_TARGET_DIR honoured (cargo deb finds the
# binary there itself).
target_dir="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' <<<"$metadata")"
target="x86_64-unknown-linux-gnu"
# Where Cargo.toml's assets name the man pages, completions and changelog;
# the new .deb and tarball are made in $fresh and replace the old ones only
# once both are built, so a failed build leaves the last good artefacts.
out="target/package"
fresh="$out/fresh"
rm -rf "$fresh"
mkdir -p "$fresh"

# glibc 2.17 is the floor Rust's standard library supports.
cargo zigbuild --release --locked --target "$target.2.17"
binary="$target_dir/$target/release/flarum-ws"
rm -rf "$out/man" "$out/completions"
"$binary" generate man "$out/man"
"$binary" generate completions "$out/completions"

# The Debian package: assets and the unit are listed in Cargo.toml. Debian
# wants a changelog in its own format, pointing at CHANGELOG.md, which goes
# in as the upstream changelog (changelog.gz).
gzip -9n -c CHANGELOG.md >"$out/changelog.gz"
maintainer="$(sed -n 's/^maintainer = "\(.*\)"$/\1/p' Cargo.toml)"
released="$(git log -1 --format=%aD 2>/dev/null || date -R)"
cat >"$out/changelog.Debian" <<CHANGELOG
flarum-ws ($version-1) unstable; urgency=medium

  * Release $version; the changes are in /usr/share/doc/flarum-ws/changelog.gz.

 -- $maintainer  $released
CHANGELOG
cargo deb --no-build --locked --target "$target" --output "$fresh/"

# The tarball: the unit points at /usr/local/bin, where INSTALL puts the binary.
name="flarum-ws-$version-$target"
stage="$fresh/$name"
mkdir -p "$stage/systemd" "$stage/man" "$stage/completions"
install -m 755 "$binary" "$stage/flarum-ws"
sed 's#/usr/bin/flarum-ws#/usr/local/bin/flarum-ws#' contrib/flarum-ws.service >"$stage/systemd/flarum-ws.service"
cp contrib/flarum-ws.default "$stage/systemd/flarum-ws.default"
sed 's#/usr/bin/flarum-ws#/usr/local/bin/flarum-ws#' contrib/flarum-ws-listen.socket >"$stage/systemd/flarum-ws-listen.socket"
cp contrib/flarum-ws.example.yaml README.md CHANGELOG.md SECURITY.md CONTRIBUTING.md LICENSE packaging/INSTALL "$stage/"
cp -r docs "$stage/docs"
cp contrib/grafana/flarum-ws.json "$stage/grafana-dashboard.json"
cp "$out"/man/*.1 "$stage/man/"
cp "$out"/completions/* "$stage/completions/"
tar -C "$fresh" --owner=0 --group=0 --sort=name -czf "$fresh/$name.tar.gz" "$name"
rm -rf "$stage"

rm -f "$out"/*.deb "$out"/*.tar.gz
mv "$fresh"/*.deb "$fresh"/*.tar.gz "$out/"
rmdir "$fresh"

echo "built:"
ls -1 "$out"/*.deb "$out"/*.tar.gz
