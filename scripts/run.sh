#!/usr/bin/env bash
# The main job: build sealvol, install it, and start `sealvol serve` registered with the local
# Docker engine (starting dockerd if none runs), so that right after it:
#
#   docker volume create --driver sealvol -o keyfile=/etc/sealvol/default.key myvol
#   docker run --rm -v myvol:/data busybox sh -c 'echo hi > /data/f'
#
# Volumes created without a key option use /etc/sealvol/default.key (made here once, 0600).
# With systemd, install scripts/sealvol.service instead of running this in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROCKSDB_LIB_DIR=/usr/lib/x86_64-linux-gnu

state=${SEALVOL_STATE:-/var/lib/sealvol}
key=${SEALVOL_DEFAULT_KEY:-/etc/sealvol/default.key}
socket=/run/docker/plugins/sealvol.sock

cargo build --release --quiet -p sealvol
install -m 0755 "${CARGO_TARGET_DIR:-$(pwd)/target}/release/sealvol" /usr/local/bin/sealvol

if [ ! -f "$key" ]; then
    install -d -m 0700 "$(dirname "$key")"
    (umask 077; head -c 32 /dev/urandom > "$key")
    echo "run: created the default key $key (back it up: without it those volumes are gone)"
fi

if ! docker info >/dev/null 2>&1; then
    echo "run: starting dockerd (log: /var/log/dockerd-sealvol.log)"
    dockerd >/var/log/dockerd-sealvol.log 2>&1 &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi

pidfile=/run/sealvol-serve.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "run: sealvol serve is already running (pid $(cat "$pidfile"))"
else
    mkdir -p "$state"
    nohup /usr/local/bin/sealvol serve --socket "$socket" --state-dir "$state" \
        --default-keyfile "$key" >>/var/log/sealvol-serve.log 2>&1 &
    echo $! > "$pidfile"
    for _ in $(seq 1 50); do [ -S "$socket" ] && break; sleep 0.1; done
    [ -S "$socket" ] || { echo "run: sealvol serve did not start; see /var/log/sealvol-serve.log" >&2; exit 1; }
    echo "run: sealvol serve started (pid $!, log /var/log/sealvol-serve.log; stop: kill \$(cat $pidfile))"
fi
# Docker activates the plugin on first use; listing proves the socket answers.
docker volume ls --filter driver=sealvol
echo "run: ready: docker volume create --driver sealvol [-o keyfile=FILE | -o passphrase-file=FILE] NAME"
