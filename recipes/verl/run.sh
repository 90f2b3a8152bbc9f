#!/usr/bin/env bash
# The paper's stage-2 RL run on verl 0.9.1, with effirl's reward on a Ray cluster.
#
#   recipes/verl/run.sh [rloo|grpo|grpo_round] [extra Hydra overrides...]
#
# Environment:
#   EFFIRL_VERL_MODEL          the stage-1 DPO checkpoint of Qwen2.5-Coder-7B-Instruct (required)
#   EFFIRL_VERL_DATA           where the parquet files go (default: data/verl)
#   EFFIRL_TRAIN_SUITE         the suite whose tasks are the prompts (default: builtin)
#   EFFIRL_TRAIN_SOURCE        its local file or folder, if not bundled (must exist at this path on every node)
#   EFFIRL_VAL_FRACTION        share of the tasks held out for validation (default: 0.05)
#   EFFIRL_VERL_NODE_RESOURCE  a custom Ray resource the CPU nodes offer: sandbox actors go there only
#   RAY_ADDRESS                the running cluster to join (default: verl starts one on this machine)
#
# A cluster: GPU nodes run verl's workers; CPU nodes run effirl's sandbox actors (one per CPU, the same warmed
# fork servers as `effirl measure`, with valgrind installed for callgrind), e.g.
#   head:      ray start --head --num-gpus 8
#   CPU nodes: ray start --address HEAD:6379 --num-cpus 64 --resources '{"effirl": 1000}'
# and EFFIRL_VERL_NODE_RESOURCE=effirl. verl needs its own environment (it pins transformers < 5.11):
#   python -m venv verl-env && . verl-env/bin/activate && pip install torch==2.13.0 && pip install 'effirl[verl]'
# on every node (effirl registers its advantage estimators and reward manager through verl's plugin entry point).
set -euo pipefail

variant="${1:-rloo}"
shift || true
case "$variant" in
  rloo|grpo|grpo_round) ;;
  *) echo "usage: $0 [rloo|grpo|grpo_round] [hydra overrides...]" >&2; exit 2 ;;
esac
: "${EFFIRL_VERL_MODEL:?set EFFIRL_VERL_MODEL to the stage-1 DPO checkpoint}"
export EFFIRL_VERL_DATA="${EFFIRL_VERL_DATA:-data/verl}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

source_args=()
if [[ -n "${EFFIRL_TRAIN_SOURCE:-}" ]]; then source_args=(--source "$EFFIRL_TRAIN_SOURCE"); fi
effirl data verl --suite "${EFFIRL_TRAIN_SUITE:-builtin}" "${source_args[@]}" --out "$EFFIRL_VERL_DATA" \
  --val-fraction "${EFFIRL_VAL_FRACTION:-0.05}"

ray_args=()
if [[ -n "${RAY_ADDRESS:-}" ]]; then ray_args=(+ray_kwargs.ray_init.address="$RAY_ADDRESS"); fi

exec python -m verl.trainer.main_ppo --config-path "$here/config" --config-name "effirl_${variant}" \
  "${ray_args[@]}" "$@"
