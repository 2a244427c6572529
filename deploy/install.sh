#!/bin/sh
# Install or upgrade youxu on a Debian-based gateway (Debian 12 / Ubuntu 22.04 or newer), as root.
#
#   sudo deploy/install.sh [SOURCE]
#
# SOURCE is what pip installs: this repository (default: the directory above this script), a
# wheel file, or a release name. Idempotent: run it again to upgrade. It never overwrites an
# existing /etc/youxu/site.yaml; the database schema is upgraded by the daemon when it starts.
set -eu

PREFIX=/opt/youxu
HERE=$(cd "$(dirname "$0")" && pwd)
SOURCE=${1:-$(dirname "$HERE")}

[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 2; }

echo "== packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q python3 python3-venv python3-pip ca-certificates sqlite3 >/dev/null
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "install.sh: youxu needs Python 3.11 or newer (this is $(python3 -V))" >&2; exit 2; }

echo "== user and directories"
getent group youxu >/dev/null || groupadd --system youxu
getent passwd youxu >/dev/null || useradd --system --gid youxu --home-dir /var/lib/youxu \
  --shell /usr/sbin/nologin --comment "youxu edge controller" youxu
usermod -a -G dialout youxu  # RS-485 adapters
install -d -o root -g youxu -m 0750 /etc/youxu
install -d -o youxu -g youxu -m 0750 /var/lib/youxu
install -d -o youxu -g youxu -m 0750 /var/backups/youxu

was_active=no
systemctl is-active --quiet youxu && was_active=yes
if [ "$was_active" = yes ] && [ -f /var/lib/youxu/youxu.sqlite ]; then
  echo "== backup before the upgrade"
  runuser -u youxu -- "$PREFIX/bin/python" -m youxu.controller.store.backup --config /etc/youxu/site.yaml \
    --out /var/backups/youxu || echo "install.sh: warning: backup failed, continuing" >&2
fi

echo "== youxu into $PREFIX"
[ -x "$PREFIX/bin/python" ] || python3 -m venv "$PREFIX"
"$PREFIX/bin/pip" install -q --upgrade pip
"$PREFIX/bin/pip" install -q --upgrade "$SOURCE"
ln -sf "$PREFIX/bin/youxu" /usr/local/bin/youxu
install -d "$PREFIX/share"
install -m 0644 "$HERE/OPERATORS.md" "$PREFIX/share/OPERATORS.md"

if [ ! -f /etc/youxu/site.yaml ]; then
  example=$("$PREFIX/bin/python" -c 'import youxu.config, pathlib; print(pathlib.Path(youxu.config.__file__).parent / "site.example.yaml")')
  install -o root -g youxu -m 0640 "$example" /etc/youxu/site.yaml
  echo "   wrote /etc/youxu/site.yaml from the example: edit it for this site"
fi

echo "== systemd units"
install -m 0644 "$HERE/systemd/youxu.service" /etc/systemd/system/youxu.service
install -m 0644 "$HERE/systemd/youxu-backup.service" /etc/systemd/system/youxu-backup.service
install -m 0644 "$HERE/systemd/youxu-backup.timer" /etc/systemd/system/youxu-backup.timer
[ -f /etc/logrotate.d/youxu ] || install -m 0644 "$HERE/logrotate/youxu" /etc/logrotate.d/youxu
systemctl daemon-reload
systemctl enable --quiet youxu.service youxu-backup.timer
systemctl start youxu-backup.timer

echo "== config check"
if youxu check-config /etc/youxu/site.yaml; then
  if [ "$was_active" = yes ]; then
    systemctl restart youxu && echo "   restarted youxu (schema upgraded at start if needed)"
  else
    systemctl start youxu && echo "   started youxu"
  fi
  echo "   status: systemctl status youxu; logs: journalctl -u youxu -f; health: curl -s 127.0.0.1:9108/healthz"
else
  echo "   fix /etc/youxu/site.yaml, then: systemctl start youxu" >&2
fi
