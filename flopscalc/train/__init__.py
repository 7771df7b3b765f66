"""Reference GPT-2 trainer (optional extra ``flopscalc[train]``): the only place torch is imported."""
