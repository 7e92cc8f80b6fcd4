#!/usr/bin/env bash
# Restore tar.age layers (a full `sealvol export --format tar.age`, then exports made with
# `--since` the one before) into DEST with age and GNU tar alone, in order:
#
#   scripts/apply-tar-age-layers.sh -i key.txt DEST backup1.tar.age backup2.tar.age ...
#
# In each layer, an empty file `.wh.NAME` (an OCI whiteout) means NAME, and everything below
# it, is gone since the layer before: it is removed from DEST first, then the layer's other
# entries are extracted over what is there. Each layer is decrypted twice (to list it, then to
# extract it), so that no plaintext is written anywhere but DEST. Names holding a newline are
# not handled. As root, owners are restored too (--numeric-owner).
set -euo pipefail
if [ $# -lt 4 ] || [ "$1" != -i ]; then
    echo "usage: $0 -i IDENTITY_FILE DEST LAYER.tar.age..." >&2
    exit 2
fi
id=$2
dest=$3
shift 3
mkdir -p "$dest"
for layer in "$@"; do
    age -d -i "$id" "$layer" | tar -t | while IFS= read -r p; do
        base=${p##*/}
        case "$base" in .wh.?*) ;; *) continue ;; esac
        dir=${p%"$base"}
        rm -rf -- "${dest:?}/$dir${base#.wh.}"
    done
    age -d -i "$id" "$layer" |
        tar -x --xattrs --xattrs-include='*' --numeric-owner --exclude='.wh.*' -C "$dest"
done
