#!/usr/bin/env bash
# Makes the tree that a device call sends small enough for the GPU check's carry (README: GPU
# check), and puts it back. A call sends the tracked files plus what it carries, 64 MiB in all;
# the tracked tree is ~62 MB, most of it weights and test data the check does not need or carries
# itself. `slim` takes those paths out of git's index only (the files stay on disk, nothing is
# committed) and lists them in .git/info/exclude, so they neither travel nor show as untracked;
# `restore` puts the index and the exclude file back as they were.
#
#   bash scripts/gpu_tree.sh slim|restore
#
# Never commit while slim: the commit would delete the weights. Slim refuses a staged index.
set -euo pipefail
cd "$(dirname "$0")/.."

# Weights travel as carried paths in the run phase; the rest is not used on the GPU host.
SLIM_PATHS=(models test/data/real docs/images test/data/reference/softgroup_deep_pointwise.npz)
exclude=.git/info/exclude
marker="# gpu_tree.sh slim"

case "${1:-}" in
  slim)
    if grep -qF "$marker" "$exclude" 2>/dev/null; then
      echo "gpu_tree: already slim (bash scripts/gpu_tree.sh restore)" >&2; exit 1
    fi
    if ! git diff --cached --quiet; then
      echo "gpu_tree: the index has staged changes; commit or unstage them first" >&2; exit 1
    fi
    git rm -r -q --cached -- "${SLIM_PATHS[@]}"
    mkdir -p "$(dirname "$exclude")"
    { echo "$marker"; printf '/%s\n' "${SLIM_PATHS[@]}"; } >> "$exclude"
    echo "gpu_tree: slim; $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes tracked"
    ;;
  restore)
    git reset -q -- "${SLIM_PATHS[@]}"
    if [ -f "$exclude" ]; then
      python3 - "$exclude" "$marker" "${#SLIM_PATHS[@]}" <<'EOF'
import sys
path, marker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(path).read().splitlines(keepends=True)
if any(line.rstrip("\n") == marker for line in lines):
    at = [line.rstrip("\n") for line in lines].index(marker)
    del lines[at:at + 1 + count]
open(path, "w").write("".join(lines))
EOF
    fi
    echo "gpu_tree: restored"
    ;;
  *) echo "usage: bash scripts/gpu_tree.sh slim|restore" >&2; exit 2 ;;
esac
