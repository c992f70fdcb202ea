#!/usr/bin/env bash
# Train on a Cloud TPU VM slice (one host or a multi-host pod): create the slice or reuse it, install
# ascl_jax from git on every worker, copy the run config to every worker, and start `ascl train` on all
# workers at once. jax.distributed finds the other workers by itself on TPU VMs (no addresses to pass).
# See docs/launch.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/tpu_pod.sh --name NAME --zone ZONE --bucket gs://BUCKET/PATH --config CONFIG.yaml
                         [--accelerator-type TYPE] [options] [-- key=value ...]

required:
  --name NAME              TPU VM name (reused when it exists, created otherwise)
  --zone ZONE              e.g. us-central2-b, us-west4-a
  --bucket gs://B/PATH     where the run goes: checkpoints to gs://B/PATH/checkpoints (orbax writes them
                           through tensorstore), the rest of the run folder (config, metrics, final model,
                           report) to run_dir (below)
  --config FILE            the run config (YAML), e.g. configs/qwen3-8b-tpu-v5p-32.yaml; copied to every worker
  --accelerator-type TYPE  slice type, e.g. v5litepod-8, v5p-32, v4-32, v6e-8 (needed only to create)

options:
  --project ID             gcloud project (default: gcloud's configured project)
  --version RUNTIME        TPU software version (default by type: v4 tpu-ubuntu2204-base,
                           v5litepod v2-alpha-tpuv5-lite, v5p v2-alpha-tpuv5, v6e v2-alpha-tpuv6e)
  --spot                   create a Spot slice
  --repo URL               git URL to install from (default: this checkout's `origin` remote)
  --ref REF                branch, tag or commit (default: this checkout's HEAD commit; push it first)
  --setup CMD              a shell command run on every worker before training, e.g. to fetch the
                           model: "gcloud storage cp -r gs://B/Qwen3-8B /tmp/models/"
  --no-mount               keep run_dir on the workers' disks (~/ascl/run: process 0 writes there) and
                           only the checkpoints on gs:// (default: mount the bucket with gcsfuse at
                           /gcs/BUCKET on every worker and use run_dir=/gcs/BUCKET/PATH)
  --skip-install           do not (re)install ascl_jax on the workers
  --detach                 start training in the background and return (log: ~/ascl/train.log on each
                           worker); default: stream the workers' output until training ends
  -h, --help               this text

Everything after `--` is passed to `ascl train` as key=value overrides, e.g. -- rl.steps=100.
EOF
}

die() {
  echo "tpu_pod.sh: error: $*" >&2
  exit 2
}

need_value() {
  [[ $2 -ge 2 && -n "$3" && "$3" != --* ]] || die "$1 needs a value (try --help)"
}

name="" zone="" bucket="" config="" accel="" project="" version="" repo="" ref="" setup=""
spot=0 mount=1 install=1 detach=0
overrides=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) need_value "$1" "$#" "${2:-}"; name="$2"; shift 2 ;;
    --zone) need_value "$1" "$#" "${2:-}"; zone="$2"; shift 2 ;;
    --bucket) need_value "$1" "$#" "${2:-}"; bucket="$2"; shift 2 ;;
    --config) need_value "$1" "$#" "${2:-}"; config="$2"; shift 2 ;;
    --accelerator-type) need_value "$1" "$#" "${2:-}"; accel="$2"; shift 2 ;;
    --project) need_value "$1" "$#" "${2:-}"; project="$2"; shift 2 ;;
    --version) need_value "$1" "$#" "${2:-}"; version="$2"; shift 2 ;;
    --repo) need_value "$1" "$#" "${2:-}"; repo="$2"; shift 2 ;;
    --ref) need_value "$1" "$#" "${2:-}"; ref="$2"; shift 2 ;;
    --setup) need_value "$1" "$#" "${2:-}"; setup="$2"; shift 2 ;;
    --spot) spot=1; shift ;;
    --no-mount) mount=0; shift ;;
    --skip-install) install=0; shift ;;
    --detach) detach=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; overrides=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1 (run_dir overrides go after --)" ;;
  esac
done

missing=()
[[ -n "$name" ]] || missing+=(--name)
[[ -n "$zone" ]] || missing+=(--zone)
[[ -n "$bucket" ]] || missing+=(--bucket)
[[ -n "$config" ]] || missing+=(--config)
if [[ ${#missing[@]} -gt 0 ]]; then
  usage >&2
  die "missing ${missing[*]}"
fi
[[ "$bucket" == gs://?* ]] || die "--bucket must be a gs:// path (gs://BUCKET/PATH), got: $bucket"
[[ -f "$config" ]] || die "--config $config: no such file"
for o in "${overrides[@]}"; do
  [[ "$o" == *=* ]] || die "after --, give key=value overrides; got: $o"
  [[ "$o" != run_dir=* && "$o" != checkpoint.directory=* ]] || die "run_dir and checkpoint.directory come from --bucket; do not override them after --"
done
command -v gcloud >/dev/null || die "gcloud not found: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "$repo" ]]; then
  repo="$(git -C "$here" remote get-url origin 2>/dev/null)" || die "no --repo given and this checkout has no 'origin' remote"
fi
if [[ -z "$ref" ]]; then
  ref="$(git -C "$here" rev-parse HEAD 2>/dev/null)" || die "no --ref given and this is not a git checkout"
fi

# run_dir as the workers see it
bucket_path="${bucket#gs://}"
bucket_name="${bucket_path%%/*}"
if [[ "$mount" -eq 1 ]]; then
  run_dir="/gcs/$bucket_path"
else
  run_dir="run"
fi
checkpoints="${bucket%/}/checkpoints"

tpu=(compute tpus tpu-vm)
where=(--zone "$zone")
[[ -z "$project" ]] || where+=(--project "$project")

on_all_workers() {
  gcloud "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command "$1"
}

# 1. the slice: reuse, start, or create
if state="$(gcloud "${tpu[@]}" describe "$name" "${where[@]}" --format='value(state)' 2>/dev/null)"; then
  case "$state" in
    READY) echo "tpu_pod.sh: reusing TPU VM $name ($zone)" ;;
    STOPPED)
      echo "tpu_pod.sh: starting stopped TPU VM $name"
      gcloud "${tpu[@]}" start "$name" "${where[@]}"
      ;;
    *) die "TPU VM $name is in state $state; wait for READY, or delete it (gcloud compute tpus tpu-vm delete $name --zone $zone)" ;;
  esac
else
  [[ -n "$accel" ]] || die "TPU VM $name does not exist in $zone; give --accelerator-type (e.g. v5litepod-8) to create it"
  if [[ -z "$version" ]]; then
    case "$accel" in
      v4-*) version="tpu-ubuntu2204-base" ;;
      v5litepod-* | v5e-*) version="v2-alpha-tpuv5-lite" ;;
      v5p-*) version="v2-alpha-tpuv5" ;;
      v6e-*) version="v2-alpha-tpuv6e" ;;
      *) die "no default --version for accelerator type $accel; give --version" ;;
    esac
  fi
  create=(create "$name" "${where[@]}" --accelerator-type "$accel" --version "$version")
  [[ "$spot" -eq 0 ]] || create+=(--spot)
  echo "tpu_pod.sh: creating TPU VM $name ($accel, $version) in $zone"
  gcloud "${tpu[@]}" "${create[@]}"
fi

# 2. install on every worker (Python 3.11 via uv: the TPU images ship an older python3)
q_req="$(printf '%q' "ascl_jax[tpu] @ git+$repo@$ref")"
if [[ "$install" -eq 1 ]]; then
  echo "tpu_pod.sh: installing ascl_jax[tpu] from $repo@$ref on all workers"
  on_all_workers "set -euo pipefail
mkdir -p ~/ascl
command -v uv >/dev/null || [ -x ~/.local/bin/uv ] || curl -LsSf https://astral.sh/uv/install.sh | sh
export PATH=\$HOME/.local/bin:\$PATH
uv venv --allow-existing --python 3.11 ~/ascl/venv
VIRTUAL_ENV=~/ascl/venv uv pip install --upgrade $q_req"
fi

# 3. the bucket (gcsfuse) and the config on every worker
if [[ "$mount" -eq 1 ]]; then
  q_bucket="$(printf '%q' "$bucket_name")"
  echo "tpu_pod.sh: mounting gs://$bucket_name at /gcs/$bucket_name on all workers"
  on_all_workers "set -euo pipefail
if ! command -v gcsfuse >/dev/null; then
  echo 'deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-'\$(lsb_release -c -s)' main' | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null
  curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null
  sudo apt-get update -qq && sudo apt-get install -y -qq gcsfuse
fi
sudo mkdir -p /gcs/$q_bucket && sudo chown \$(id -u):\$(id -g) /gcs/$q_bucket
mountpoint -q /gcs/$q_bucket || gcsfuse --implicit-dirs $q_bucket /gcs/$q_bucket"
fi
gcloud "${tpu[@]}" scp "$config" "$name:ascl/config.yaml" "${where[@]}" --worker=all
if [[ -n "$setup" ]]; then
  echo "tpu_pod.sh: running --setup on all workers"
  on_all_workers "set -euo pipefail; cd ~/ascl; $setup"
fi

# 4. train on every worker (each is one JAX process; they join through jax.distributed)
train="cd ~/ascl && . venv/bin/activate && ASCL_DISTRIBUTED=auto ascl train config.yaml $(printf '%q ' "run_dir=$run_dir" "checkpoint.directory=$checkpoints" "${overrides[@]}")"
echo "tpu_pod.sh: starting on all workers: $train"
if [[ "$detach" -eq 1 ]]; then
  on_all_workers "cd ~/ascl && setsid nohup bash -c $(printf '%q' "$train") >train.log 2>&1 </dev/null &"
  echo "tpu_pod.sh: started; follow with: gcloud compute tpus tpu-vm ssh $name --zone $zone --worker=0 --command 'tail -f ~/ascl/train.log'"
else
  on_all_workers "$train"
fi
echo "tpu_pod.sh: run_dir: $bucket"
