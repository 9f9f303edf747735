#!/usr/bin/env bash
# tests/package.sh [--install]: builds superd's Debian package from the committed tree
# (git archive HEAD, in /srv/superd-pkg), prints its file list and lintian's findings, and with
# --install installs it with apt on this machine, checks that it starts and enables nothing and
# that /etc/superd/superd.toml is a conffile, then purges it and checks that nothing is left.
# Not part of `tests/run` (it takes ~5 minutes, and --install changes the machine). As root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps debhelper lintian dpkg-dev
out=/srv/superd-pkg
rm -rf "$out" && mkdir -p "$out/src"
git archive HEAD | tar -x -C "$out/src"
start=$(date +%s)
(cd "$out/src" && dpkg-buildpackage -us -uc -b >"$out/build.log" 2>&1) || { tail -30 "$out/build.log"; exit 1; }
echo "package: built in $(($(date +%s) - start)) s"
deb=$(ls "$out"/superd_*_*.deb)
dpkg-deb -c "$deb" | awk '{print "  " $6}'
dpkg-deb -f "$deb" Provides | grep -qx "inet-superserver" || { echo "no Provides: inet-superserver"; exit 1; }
echo "lintian:"
lintian "$deb" 2>&1 | grep -v "running with root privileges" | sed 's/^/  /' || true
lintian "$deb" 2>/dev/null | grep -q "^E:" && { echo "lintian found errors"; exit 1; }
[ "${1:-}" = "--install" ] || exit 0
[ -e /etc/superd ] && { echo "/etc/superd exists on this machine: not installing over it"; exit 1; }
apt-get install -y -qq "$deb" >/dev/null
trap 'apt-get purge -y -qq superd >/dev/null 2>&1 || true' EXIT
test -x /usr/sbin/superd && /usr/sbin/superd --version
grep -qx /etc/superd/superd.toml /var/lib/dpkg/info/superd.conffiles
/usr/sbin/superd check -c /etc/superd/superd.toml
! pgrep -xf "/usr/sbin/superd serve.*" >/dev/null || { echo "superd was started on install"; exit 1; }
[ ! -e /etc/systemd/system/multi-user.target.wants/superd.service ] || { echo "superd.service was enabled"; exit 1; }
getent passwd superd-0 >/dev/null 2>&1 || true  # the NSS module is not in nsswitch.conf unless the admin adds it
apt-get purge -y -qq superd >/dev/null
trap - EXIT
left=$(ls -d /etc/superd /usr/sbin/superd /lib/systemd/system/superd.service \
       /usr/lib/x86_64-linux-gnu/libnss_superd.so.2 2>/dev/null || true)
[ -z "$left" ] || { echo "left after purge: $left"; exit 1; }
echo "package: installed (nothing started or enabled) and purged (nothing left)"
