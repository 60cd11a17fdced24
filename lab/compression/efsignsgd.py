"""`efsignsgd`: the scaled sign with error feedback always on (Karimireddy et al. 2019; chapter 07).

Plain signSGD can fail to converge (the sign throws away magnitudes in a biased way); feeding
back what each step dropped fixes that. The wire format is `signsgd`'s (bits + mean|x|); the
difference is `error_feedback = True`, so `build_memory` gives it a residual memory even when
`CompressionConfig.error_feedback` is False. Workers' results are averaged, never voted.
"""
from dataclasses import dataclass

from . import compressor
from .signsgd import SignSGD


@compressor("efsignsgd")
class EFSignSGD(SignSGD):
    error_feedback = True

    @dataclass
    class Options:
        """No knobs: signs are averaged, never voted, and error feedback is always on."""

    def __init__(self, cfg=None):
        super().__init__(cfg, majority_vote=False)  # the paper's analysis is for averaging
