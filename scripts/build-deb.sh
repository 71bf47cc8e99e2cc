#!/usr/bin/env bash
# Builds the Debian package target/debian/optout-milter_VERSION-1_ARCH.deb with cargo-deb
# (`cargo install cargo-deb`), from [package.metadata.deb] in Cargo.toml.
#
# The manuals and completions are made by the binary just built, from its own command
# line and example config, so they cannot drift from it. The installed config is the
# example config with the paths a package needs: each replacement must match exactly
# once, so a change to the example that would silently break the package stops the build.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Debian changelog names the version it packages.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
if ! head -n 1 deploy/debian/changelog | grep -qF "optout-milter ($version-1)"; then
    echo "build-deb: deploy/debian/changelog does not begin with version $version-1" >&2
    exit 1
fi

cargo build --release --locked
bin=target/release/optout-milter
out=target/release/package
rm -rf "$out"
mkdir -p "$out"

"$bin" manual optout-milter.8 | gzip -9n >"$out/optout-milter.8.gz"
"$bin" manual optout-milter.toml.5 | gzip -9n >"$out/optout-milter.toml.5.gz"
"$bin" completions bash >"$out/optout-milter.bash"
"$bin" completions zsh >"$out/_optout-milter"
"$bin" completions fish >"$out/optout-milter.fish"

config=$(cat config/optout-milter.toml)
replace() { # FROM TO: one line of the example, exactly once
    local count
    count=$(grep -cxF -- "$1" <<<"$config" || true)
    if [ "$count" != 1 ]; then
        echo "build-deb: config/optout-milter.toml has $count lines '$1', expected 1" >&2
        exit 1
    fi
    config=${config/"$1"/"$2"}
}
# The store in the state directory the unit gives the service.
replace 'url = "sqlite:optout-milter.db"' 'url = "sqlite:///var/lib/optout-milter/consent.db"'
# The key the package made at its first install; /etc is read-only to the service.
replace 'generate_missing_key = true' 'generate_missing_key = false'
replace 'file = "optout-milter-token.key"' 'file = "/etc/optout-milter/token-1.key"'
printf '%s\n' "$config" >"$out/optout-milter.toml"

cargo deb --no-build --strip --output target/debian/
