"""Offline training data from scored samples: AST dedup, SFT rows, DPO pairs, decontamination, exports."""
