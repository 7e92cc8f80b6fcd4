#!/usr/bin/env bash
# Installs what building and testing sealvol needs on a fresh Debian machine. Idempotent.
set -euo pipefail

need=(fuse3 libfuse3-dev libclang-dev librocksdb-dev pkg-config attr libcap2-bin sqlite3 git python3 tar coreutils util-linux
      docker.io docker-compose busybox-static curl)
missing=()
for p in "${need[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Containers run as any user: let every user of a FUSE mount in (sealvol mounts with
# allow_other and default_permissions, so the kernel still checks modes).
if [ -f /etc/fuse.conf ] && ! grep -q '^user_allow_other' /etc/fuse.conf; then
    echo user_allow_other >> /etc/fuse.conf
fi

if ! command -v cargo-deny >/dev/null 2>&1; then
    echo "setup: installing cargo-deny (a few minutes, once)"
    cargo install cargo-deny --locked --quiet
fi
echo "setup: done"
