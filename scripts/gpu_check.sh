#!/usr/bin/env bash
# The prepared GPU check (issue 15, item 5): one command, well under 10 minutes, on an offline
# GPU host, run from the repository root. In order, each step under its own time limit:
#   1. install  the carried wheels (CUDA spconv, cumm and the small packages the host lacks, from
#               .gpu_carry/, made by scripts/gpu_carry_pack.sh) and this package (--no-deps);
#   2. build    the CUDA ops (ros2_inst3d/ops/csrc) for this GPU's architecture only;
#   3. tests    the op/backbone/inference tests on CUDA, which compare the kernels with the CPU path;
#   4. bench    per-stage pipeline times for every method on cpu and cuda (`bench --pipeline`);
#   5. train    the default model (config/train/softgroup_synthetic.yaml, from the shipped
#               weights, on the carried generated rooms) for the rest of the budget.
# Writes under $OUT (or ./gpu_check_out): gpu_check.log (everything), summary.txt (one line per
# step: status, seconds), env.txt, bench.json, train_log.jsonl, train.yaml.
#
#   bash scripts/gpu_check.sh [--budget-s 540] [--dry-run]
#
# --dry-run runs the same steps on a CPU host with tiny sizes (no install, no CUDA build, CPU
# devices, 2 training iterations) to check the script, the carry and the command lines.
# Exit status: 0 ran (failed steps are named in summary.txt and make it 1), 2 bad arguments or
# carry, 3 no CUDA device (nothing run), 4 carry staged: parts still missing (README: GPU check).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

budget_s=540
dry_run=0
while (($#)); do
  case "$1" in
    --budget-s) budget_s="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
start=$SECONDS
out="${OUT:-$repo/gpu_check_out}"
mkdir -p "$out"
log="$out/gpu_check.log"
summary="$out/summary.txt"
: > "$summary"
work=$(mktemp -d /tmp/gpu_check.XXXXXX)
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1
export ROS2_INST3D_CACHE_DIR="$work/cache"
say() { echo "gpu_check: $*" | tee -a "$log"; }

# --------------------------------------------------------------------------- 0. CUDA, fail fast
if ((!dry_run)); then
  if ! python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
      >>"$log" 2>&1; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is False or torch is missing);" \
         "nothing was run. On a CPU host use --dry-run." | tee -a "$log" >&2
    exit 3
  fi
fi

# ---------------------------------------------------------------- the carry: staged, then whole
carry="$repo/.gpu_carry"
manifest="$carry/manifest.txt"
if [ ! -f "$manifest" ]; then
  say "no $manifest: make the carry with scripts/gpu_carry_pack.sh (README: GPU check)"
  exit 2
fi
parts=$(awk '$1 == "parts" {print $2}' "$manifest")
sha=$(awk '$1 == "sha256" {print $2}' "$manifest")
missing=()
for ((i = 0; i < parts; i++)); do
  part=$(printf '%s/part_%02d' "$carry" "$i")
  [ -f "$part" ] || missing+=("$(basename "$part")")
done
if ((${#missing[@]})); then
  say "carry staged: $((parts - ${#missing[@]})) of $parts parts here; missing ${missing[*]}:" \
      "run again carrying the next part (README: GPU check)"
  exit 4
fi
cat "$carry"/part_* > "$work/payload.tar"
if [ "$(sha256sum "$work/payload.tar" | cut -d' ' -f1)" != "$sha" ]; then
  say "the reassembled carry does not match manifest.txt's sha256: parts from different packs?"
  exit 2
fi
tar -C "$work" -xf "$work/payload.tar" && rm -f "$work/payload.tar"

# ----------------------------------------------------------------------------------- the steps
failed=()
remaining() { echo $((budget_s - (SECONDS - start))); }
# step NAME LIMIT_S COMMAND...: runs COMMAND under `timeout`, logs it, records status/seconds.
step() {
  local name=$1 limit=$2
  shift 2
  local left
  left=$(remaining)
  ((limit > left - 15)) && limit=$((left - 15))
  if ((limit < 10)); then
    echo "$name skipped: budget spent" >> "$summary"; failed+=("$name"); return 1
  fi
  say "=== $name (limit ${limit} s, $(remaining) s of the budget left)"
  local t0=$SECONDS rc
  timeout -k 10 -s INT "$limit" "$@" >>"$log" 2>&1
  rc=$?
  local status=ok
  if ((rc == 124 || rc == 137)); then status="stopped at its ${limit} s limit"
  elif ((rc)); then status="failed (exit $rc)"; fi
  echo "$name: $status, $((SECONDS - t0)) s" >> "$summary"
  say "$name: $status, $((SECONDS - t0)) s"
  [ "$status" = ok ] || failed+=("$name")
  return $rc
}

{
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(uname -srm), $(nproc) cores"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader
  python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  command -v nvcc >/dev/null && nvcc --version | tail -1
  echo "git: $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) changed files"
  cat "$manifest"
} > "$out/env.txt" 2>&1

# 1. install: the carried wheels into a target folder (the host's own packages stay as they are),
#    then this package without its dependencies (open3d, which only the room generator needs,
#    does not fit the carry).
site="$work/site"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
if ((dry_run)); then
  say "=== install skipped (dry run: this host's packages)"
  echo "install: skipped (dry run)" >> "$summary"
else
  if step install 120 python3 -m pip install -q --no-deps --no-compile --target "$site" \
      "$work"/wheels/*.whl; then
    export PYTHONPATH="$repo:$site"
    # An editable install registers the package; if pip cannot (no setuptools), PYTHONPATH has it.
    python3 -m pip install -q --no-deps --no-build-isolation --no-compile -e "$repo" >>"$log" 2>&1 \
      || say "editable install failed; the package runs from $repo via PYTHONPATH"
  fi
fi
python3 -c "import ros2_inst3d.model.backbone as b; print('spconv CPU-only:', b.SPCONV_CPU_ONLY)" \
  2>&1 | tee -a "$log" "$out/env.txt"

# 2. build the CUDA ops for this GPU only (all cores); a build that fails leaves the ops on their
#    CPU path, and the CUDA tests would then compare the CPU path with itself: say so loudly.
if ((dry_run)); then
  echo "build: skipped (dry run)" >> "$summary"
else
  arch=$(python3 -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
  export TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS="$(nproc)"
  step build 240 python3 -c "
import warnings; warnings.simplefilter('error')
from ros2_inst3d.ops._backend import cuda_extension, extension_build_dir
import time; t = time.perf_counter(); ext = cuda_extension()
print('CUDA ops built for sm_$arch in %.0f s into %s' % (time.perf_counter() - t, extension_build_dir()))
" || say "the CUDA ops did NOT build: the [cuda] op tests below run the CPU fallback"
fi

# 3. tests: every [cuda] case (the op tests run each op on cpu and cuda and compare them).
if ((dry_run)); then
  step tests 120 python3 -m pytest -q -x -p no:cacheprovider test/test_ops.py -k "fps and cpu"
else
  step tests 180 python3 -m pytest -q -p no:cacheprovider -k cuda test/test_ops.py \
    test/test_instance_ops.py test/test_backbone.py test/test_inference.py
fi

# 4. bench: one method per command (a method that fails does not hide the others), one JSON.
methods=(geometric pointgroup softgroup isbnet mtml)  # the bench's --models choices
devices=(cpu cuda)
repeats=3
if ((dry_run)); then methods=(geometric); devices=(cpu); repeats=1; fi
for method in "${methods[@]}"; do
  step "bench $method" 90 python3 -m ros2_inst3d.cli bench --pipeline --models "$method" \
    --devices "${devices[@]}" --repeats "$repeats" --json "$work/bench_$method.json"
done
python3 - "$work" "$out/bench.json" <<'EOF' >>"$log" 2>&1
import json, pathlib, sys
reports = {p.stem[len("bench_"):]: json.loads(p.read_text())
           for p in sorted(pathlib.Path(sys.argv[1]).glob("bench_*.json"))}
pathlib.Path(sys.argv[2]).write_text(json.dumps(reports, indent=1))
print("bench.json:", ", ".join(reports) or "no method finished")
EOF

# 5. train the default model for what is left: SoftGroup from the shipped weights (stage 2 of
#    the two-stage recipe; the stage-1 checkpoint it normally starts from is not in the repo).
data="$work/data"
python3 - "$repo" "$data" "$work/train" "$dry_run" "$out/train.yaml" <<'EOF' >>"$log" 2>&1
import sys, yaml, pathlib
repo, data, work_dir, dry_run, target = sys.argv[1:]
cfg = yaml.safe_load(open(f"{repo}/config/train/softgroup_synthetic.yaml"))
cfg["model"] = f"{repo}/config/models/softgroup_synthetic.yaml"
cfg["data"].update(train=f"{data}/train", val=f"{data}/val", val_limit=4)
shipped = pathlib.Path(repo, "models/softgroup_synthetic.pth")
cfg["train"].update(pretrain=str(shipped) if shipped.exists() else None,
                    max_iters=2 if dry_run == "1" else 100_000, epochs=None,
                    device="cpu" if dry_run == "1" else "cuda", cpu_threads=None, num_workers=4,
                    val_every=5)  # 12 iterations an epoch: validate every 60, not every 12
cfg["work_dir"] = work_dir
pathlib.Path(target).write_text(yaml.safe_dump(cfg, sort_keys=False))
print("train.yaml written:", target)
EOF
step train $(( $(remaining) - 25 )) python3 -m ros2_inst3d.cli train "$out/train.yaml" --quiet
[ -f "$work/train/log.jsonl" ] && cp "$work/train/log.jsonl" "$out/train_log.jsonl"
python3 - "$out/train_log.jsonl" <<'EOF' 2>&1 | tee -a "$log" >> "$summary"
import json, sys
try:
    rows = [json.loads(line) for line in open(sys.argv[1])]
except OSError:
    sys.exit(print("train: no log.jsonl"))
iters = [r for r in rows if r.get("type") == "iter"]
if not iters:
    sys.exit(print("train: no iteration finished"))
t = sum(r["time_s"] for r in iters)
head, tail = iters[:10], iters[-10:]
mean = lambda rs: sum(r["loss"] for r in rs) / len(rs)
print(f"train: {len(iters)} iterations, {len(iters) / t:.2f} it/s (median step "
      f"{sorted(r['time_s'] for r in iters)[len(iters) // 2]:.3f} s), loss {mean(head):.3f} "
      f"(first 10) -> {mean(tail):.3f} (last 10); val: "
      + "; ".join(f"AP50 {r.get('AP50', float('nan')):.3f}" for r in rows if r.get("type") == "val"))
EOF

say "done in $((SECONDS - start)) s of a ${budget_s} s budget; failed: ${failed[*]:-none}"
cat "$summary"
rm -rf "$work"
((${#failed[@]} == 0))
