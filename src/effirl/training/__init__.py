"""Training on TRL: a typed config beside each trainer (SFT, DPO, RLOO, GRPO), and the efficiency reward.

Importing this package loads no torch: each trainer module imports its libraries when used.
"""
