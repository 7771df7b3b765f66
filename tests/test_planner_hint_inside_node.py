"""The no-fit hint names the smallest GPU count inside a node too, not the next power of two (stop 17).

`plan --gpu h100 --n-gpus 4 --model llama-3-70b` said "it would fit on 8 GPUs" while the plan finds a run on 6 (ZeRO-3
with the optimizer offloaded); a node's GPUs need not all be used. Checked by running the plan itself at each count.
"""

from __future__ import annotations

import re

from conftest import cli

ARGS = ["--gpu", "h100", "--model", "llama-3-70b", "--tokens", "10B"]


def test_70b_from_4_h100s_is_told_the_smallest_count_that_plans(capsys):
    code, _, err = cli(capsys, "plan", *ARGS, "--n-gpus", "4")
    assert code == 1
    hinted = int(re.search(r"would fit on (\d+) GPUs", err).group(1))
    assert hinted < 8  # a power of two was all the old hint tried
    for n in range(5, hinted):  # every count below it is refused by the plan itself ...
        code, _, err = cli(capsys, "plan", *ARGS, "--n-gpus", str(n))
        assert code == 1 and "does not fit" in err
    code, out, _ = cli(capsys, "plan", *ARGS, "--n-gpus", str(hinted))  # ... and the plan runs on the hinted one
    assert code == 0 and "memory per GPU" in out
