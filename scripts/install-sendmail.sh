#!/usr/bin/env bash
# Unpacks Debian's Sendmail 8.17 into a private folder, without installing it: the
# sendmail-bin package conflicts with postfix, and the tests need both. Run as root.
#   scripts/install-sendmail.sh [DIR]     (default /var/lib/optout-milter-tests/sendmail-root)
set -euo pipefail
dir=${1:-/var/lib/optout-milter-tests/sendmail-root}
export DEBIAN_FRONTEND=noninteractive
# Sendmail's own libraries and the tools that build and run it.
apt-get install -y -qq --no-install-recommends m4 libwrap0 libsasl2-2 libldap-2.5-0 libdb5.3 util-linux >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq sendmail-bin sendmail-base sendmail-cf 2>/dev/null)
rm -rf "$dir"
mkdir -p "$dir"
for deb in "$work"/*.deb; do
    dpkg -x "$deb" "$dir"
done
bin="$dir/usr/libexec/sendmail/sendmail"
if ldd "$bin" | grep "not found"; then
    echo "install-sendmail: $bin lacks the libraries above" >&2
    exit 1
fi
echo "Sendmail $("$bin" -d0.1 -bt </dev/null 2>/dev/null | sed -n 's/^Version //p') unpacked in $dir"
