"""flopscalc: compute-budget planner and FLOPs calculator for training GPT-style language models.

Importing the package is cheap: no pandas, scipy, matplotlib or torch (the trainer in
``flopscalc.train`` imports torch on its own).
"""

__version__ = "0.1.0"
