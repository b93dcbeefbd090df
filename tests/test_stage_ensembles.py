"""benchmarks/stage_ensembles.py: the weight average is the parameter-wise mean and keeps the architecture."""

from __future__ import annotations

import torch
from benchmark_scripts import load_script
from rewarddance_trainer.pixel_reward.config import load_scale
from rewarddance_trainer.pixel_reward.model import PixelRewardModel


def test_weight_average_is_the_mean_of_the_stages():
    study = load_script("stage_ensembles")
    cfg = load_scale("tiny")
    torch.manual_seed(0)
    a, b = PixelRewardModel(cfg), PixelRewardModel(cfg)
    with torch.no_grad():
        a.stem[1].running_mean.fill_(1.0)  # batch-norm statistics are averaged too
        b.stem[1].running_mean.fill_(3.0)
    avg = study.weight_average([a, b])
    for key, value in avg.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (a.state_dict()[key] + b.state_dict()[key]) / 2)
    assert float(avg.stem[1].running_mean[0]) == 2.0
    same = study.weight_average([a, a])
    pixels = torch.randint(0, 256, (2, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8)
    tokens, mask = torch.randn(2, 5, cfg.prompt_dim), torch.ones(2, 5, dtype=torch.bool)
    torch.testing.assert_close(same(pixels, tokens, mask)[1], a.eval()(pixels, tokens, mask)[1])
    assert not avg.training
