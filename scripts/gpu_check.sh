#!/usr/bin/env bash
# The prepared GPU check (issue 15, item 5) for an offline GPU host, run from the repository root.
# Two phases, because what must travel (the tree, ~45 MB of CUDA wheels, the weights, rooms) is
# over one device call's 64 MiB; the second phase finds the first one's install and build in
# /tmp/ros2_inst3d_gpu on the same (still warm) machine. On a host without that limit, --phase all.
#   setup (carries .gpu_carry/site.tar.xz, made by scripts/gpu_carry_pack.sh):
#     1. install  the carried site (CUDA spconv, cumm and the small packages the host lacks);
#     2. build    the CUDA ops (ros2_inst3d/ops/csrc) for this GPU's architecture only;
#     3. op tests every [cuda] case of test_ops / test_instance_ops (each op on cuda vs cpu).
#   run (carries .gpu_carry/data.tar and models/):
#     4. tests    test_cuda.py: spconv's GPU U-Net vs the official outputs, every shipped model
#                 on cuda vs cpu on the demo room;
#     5. bench    per-stage pipeline times for every method on cpu and cuda (`bench --pipeline
#                 --scene samples/demo_room.npz`: generating a room needs open3d; SoftGroup and
#                 PointGroup also with 4 test-time views);
#     6. train    the default model (config/train/softgroup_synthetic.yaml, from the shipped
#                 weights, on the carried generated rooms) for the rest of the budget.
# Writes under $OUT (or ./gpu_check_out): gpu_check.log (everything), summary.txt (one line per
# step: status, seconds), env.txt, junit_<phase>.xml (per-test properties: worst differences),
# and for run: bench.json, train_log.jsonl, train.yaml.
#
#   bash scripts/gpu_check.sh --phase setup|run|all [--budget-s 540] [--dry-run]
#
# --dry-run runs the steps on a CPU host with tiny sizes (no install, no CUDA build, CPU devices,
# 2 training iterations) to check the script and its command lines.
# Exit status: 0 every step passed, 1 a step failed (summary.txt names it), 2 bad arguments or
# carry, 3 no CUDA device (nothing run), 4 run before setup on this machine.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

budget_s=540
dry_run=0
phase=""
while (($#)); do
  case "$1" in
    --phase) phase="$2"; shift 2 ;;
    --budget-s) budget_s="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$phase" in
  setup|run|all) ;;
  *) echo "gpu_check: --phase setup, run or all (see --help)" >&2; exit 2 ;;
esac
start=$SECONDS
out="${OUT:-$repo/gpu_check_out}"
mkdir -p "$out"
log="$out/gpu_check.log"
summary="$out/summary.txt"
: > "$summary"
state=/tmp/ros2_inst3d_gpu  # outlives one call on a warm machine: the site, the ops build, data
((dry_run)) && state=$(mktemp -d /tmp/gpu_check_dry.XXXXXX)
mkdir -p "$state"
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1
export ROS2_INST3D_CACHE_DIR="$state/cache"
export PYTHONPATH="$repo:$state/site${PYTHONPATH:+:$PYTHONPATH}"
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
  echo "phase: $phase"
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(uname -srm), $(nproc) cores"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader
  python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  command -v nvcc >/dev/null && nvcc --version | tail -1
  echo "git: $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) changed files"
  [ -f .gpu_carry/manifest.txt ] && cat .gpu_carry/manifest.txt
} > "$out/env.txt" 2>&1

setup_phase() {
  # 1. install: unpack the carried site (the host's own packages stay as they are).
  if ((dry_run)); then
    echo "install: skipped (dry run: this host's packages)" >> "$summary"
  else
    if [ ! -f .gpu_carry/site.tar.xz ]; then
      say "no .gpu_carry/site.tar.xz: make it with scripts/gpu_carry_pack.sh and carry it"
      exit 2
    fi
    rm -rf "$state/site"
    step install 120 python3 -c "
import sys, tarfile
with tarfile.open('.gpu_carry/site.tar.xz') as tar:
    tar.extractall('$state/site', filter='tar')
print('site unpacked into $state/site')"
  fi
  python3 -c "import ros2_inst3d.model.backbone as b; print('spconv CPU-only:', b.SPCONV_CPU_ONLY)" \
    2>&1 | tee -a "$log" "$out/env.txt"

  # 2. build the CUDA ops for this GPU only (all cores); a build that fails leaves the ops on
  #    their CPU path, and the CUDA tests would then compare the CPU path with itself: say so.
  if ((dry_run)); then
    echo "build: skipped (dry run)" >> "$summary"
  else
    local arch
    arch=$(python3 -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
    export TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS="$(nproc)"
    step build 240 python3 -c "
import warnings; warnings.simplefilter('error')
from ros2_inst3d.ops._backend import cuda_extension, extension_build_dir
import time; t = time.perf_counter(); ext = cuda_extension()
print('CUDA ops built for sm_$arch in %.0f s into %s' % (time.perf_counter() - t, extension_build_dir()))
" || say "the CUDA ops did NOT build: the [cuda] op tests below run the CPU fallback"
  fi

  # 3. every [cuda] case of the op tests (each runs the op on cpu and cuda and compares them).
  if ((dry_run)); then
    step "op tests" 120 python3 -m pytest -q -x -p no:cacheprovider test/test_ops.py -k "fps and cpu"
  else
    step "op tests" 150 python3 -m pytest -q -p no:cacheprovider -k cuda \
      --junitxml="$out/junit_setup.xml" test/test_ops.py test/test_instance_ops.py
  fi
  touch "$state/setup_done"
}

run_phase() {
  if ((!dry_run)) && [ ! -f "$state/setup_done" ]; then
    say "run before setup: $state has no install from --phase setup on this machine (a" \
        "machine given back between the two calls starts bare): run --phase setup again"
    exit 4
  fi
  local data="$state/data"
  if [ -f .gpu_carry/data.tar ]; then
    rm -rf "$data" && tar -C "$state" -xf .gpu_carry/data.tar
  elif ((!dry_run)); then
    say "no .gpu_carry/data.tar: training is skipped (scripts/gpu_carry_pack.sh makes it)"
  fi

  # 4. the model-level CUDA tests.
  if ((dry_run)); then
    step tests 60 python3 -m pytest -q -p no:cacheprovider -rs test/test_cuda.py
  else
    step tests 150 python3 -m pytest -q -p no:cacheprovider --junitxml="$out/junit_run.xml" \
      test/test_cuda.py
  fi

  # 5. bench: one method per command (a method that fails does not hide the others), one JSON.
  local methods=(geometric pointgroup softgroup isbnet mtml)  # the bench's --models choices
  local devices=(cpu cuda) repeats=3
  if ((dry_run)); then methods=(geometric); devices=(cpu); repeats=1; fi
  local method views
  for method in "${methods[@]}"; do
    # The methods that average test-time views also get a 4-view column (what `demo` runs).
    views=()
    case "$method" in pointgroup|softgroup) views=(--augmented-views 1 4) ;; esac
    step "bench $method" 90 python3 -m ros2_inst3d.cli bench --pipeline --models "$method" \
      --scene samples/demo_room.npz --devices "${devices[@]}" --repeats "$repeats" \
      "${views[@]}" --json "$state/bench_$method.json"
  done
  python3 - "$state" "$out/bench.json" <<'EOF' >>"$log" 2>&1
import json, pathlib, sys
reports = {p.stem[len("bench_"):]: json.loads(p.read_text())
           for p in sorted(pathlib.Path(sys.argv[1]).glob("bench_*.json"))}
pathlib.Path(sys.argv[2]).write_text(json.dumps(reports, indent=1))
print("bench.json:", ", ".join(reports) or "no method finished")
EOF

  # 6. train the default model for what is left: SoftGroup from the shipped weights (stage 2
  #    of the two-stage recipe; the stage-1 checkpoint it normally starts from is not in the repo).
  [ -d "$data/train" ] || return 0
  python3 - "$repo" "$data" "$state/train" "$dry_run" "$out/train.yaml" <<'EOF' >>"$log" 2>&1
import sys, yaml, pathlib
repo, data, work_dir, dry_run, target = sys.argv[1:]
cfg = yaml.safe_load(open(f"{repo}/config/train/softgroup_synthetic.yaml"))
cfg["model"] = f"{repo}/config/models/softgroup_synthetic.yaml"
cfg["data"].update(train=f"{data}/train", val=f"{data}/val", val_limit=4)
shipped = pathlib.Path(repo, "models/softgroup_synthetic.pth")
cfg["train"].update(pretrain=str(shipped) if shipped.exists() else None,
                    max_iters=2 if dry_run == "1" else 100_000, epochs=None,
                    device="cpu" if dry_run == "1" else "cuda", cpu_threads=None, num_workers=4,
                    val_every=5, save_every=25, val_every_iters=0, save_every_iters=0)
cfg["work_dir"] = work_dir
pathlib.Path(target).write_text(yaml.safe_dump(cfg, sort_keys=False))
print("train.yaml written:", target)
EOF
  rm -rf "$state/train"
  step train $(( $(remaining) - 25 )) python3 -m ros2_inst3d.cli train "$out/train.yaml" --quiet
  [ -f "$state/train/log.jsonl" ] && cp "$state/train/log.jsonl" "$out/train_log.jsonl"
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
}

case "$phase" in
  setup) setup_phase ;;
  run) run_phase ;;
  all) setup_phase; run_phase ;;
esac
say "$phase done in $((SECONDS - start)) s of a ${budget_s} s budget; failed: ${failed[*]:-none}"
cat "$summary"
((dry_run)) && rm -rf "$state"
((${#failed[@]} == 0))
