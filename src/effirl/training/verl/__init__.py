"""effirl's reward inside verl (the paper's RL trainer): ``compute_score``, the group step, a plugin.

* :mod:`effirl.training.verl.reward`: ``compute_score``, verl's per-sample reward function, which checks and
  measures one completion on the Ray executor and returns its status and count (no verl import);
* :mod:`effirl.training.verl.group`: the group step, F(C, G) and the penalties per verl ``uid``, through
  :func:`effirl.scoring.reward.group_rewards` (no verl import: unit-tested on verl-shaped inputs);
* :mod:`effirl.training.verl.plugin`: what verl loads through its ``verl.plugins`` entry point: the advantage
  estimators ``effirl_rloo`` / ``effirl_grpo`` and the reward manager ``effirl`` (imports verl; see its
  docstring for why the group step is an advantage estimator).

verl (``pip install 'effirl[verl]'``) pins versions of its own (transformers < 5.11): install it in an
environment of its own. ``recipes/verl/`` has the paper's run.
"""
