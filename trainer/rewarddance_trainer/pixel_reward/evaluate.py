"""Held-out metrics of a pixel reward model: Spearman of each head with the mean human rating (and of R with the
same weighted mean), pairwise accuracy on decided preference pairs, both against the dataset's noise ceiling.
``gold_metrics`` reads the simulator's ground truth: benchmarks and ``rewarddance eval reward`` call it, training
never does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rewarddance.components.base import COMPONENTS

from ..reward.evaluate import spearman
from .data import PairIndex, PromptGroups, Tables, collate
from .model import PixelRewardModel


@torch.no_grad()
def predict(
    model: PixelRewardModel,
    tables: Tables,
    states: tuple[np.ndarray, np.ndarray],
    prompt_rows: np.ndarray,
    workers: int = 1,
    prompts_per_batch: int = 32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image rows, components (n, 4), reward (n,)) for every image of ``prompt_rows``, in eval mode."""
    model.eval()
    groups = PromptGroups(tables, prompt_rows, model.cfg.image_size, max_images=10**9, seed=0)
    batches = torch.utils.data.DataLoader(groups, batch_size=prompts_per_batch, num_workers=workers, collate_fn=collate)
    tokens, mask = states
    all_rows, all_c, all_r = [], [], []
    for rows, pixels, _ in batches:
        t, m = prompt_inputs(tables, tokens, mask, rows)
        c, r = model(torch.from_numpy(pixels), t, m)
        all_rows.append(rows)
        all_c.append(c.numpy())
        all_r.append(r.numpy())
    return np.concatenate(all_rows), np.concatenate(all_c), np.concatenate(all_r)


def prompt_inputs(
    tables: Tables, tokens: np.ndarray, mask: np.ndarray, rows: np.ndarray, trim: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt states and mask of each image row; ``trim`` drops the padding columns no prompt of the batch uses."""
    prompts = tables.images.prompt_row.to_numpy()[rows]
    m = np.asarray(mask[prompts])
    length = int(m.any(axis=0).nonzero()[0].max()) + 1 if trim and m.any() else m.shape[1]
    t = np.asarray(tokens[prompts, :length], dtype=np.float32)
    return torch.from_numpy(t), torch.from_numpy(np.ascontiguousarray(m[:, :length]))


def metrics(
    tables: Tables, rows: np.ndarray, components: np.ndarray, reward: np.ndarray, weights: np.ndarray
) -> dict[str, float]:
    targets = tables.targets[rows]
    out = {f"spearman_{c}": spearman(components[:, i], targets[:, i]) for i, c in enumerate(COMPONENTS)}
    out["spearman_reward"] = spearman(reward, targets @ weights)
    out["pair_accuracy"] = pair_accuracy(tables, rows, reward)
    out["n_eval_images"] = len(rows)
    return out


def pair_accuracy(tables: Tables, rows: np.ndarray, reward: np.ndarray) -> float:
    """Share of decided pairs among ``rows`` (ties excluded) whose winner gets the higher R."""
    pa, pb, target = PairIndex(tables.pair_rows, tables.pair_target, len(tables.images)).within(rows)
    decided = target != 0.5
    if not decided.any():
        return float("nan")
    return float(((reward[pa[decided]] > reward[pb[decided]]) == (target[decided] == 1.0)).mean())


def gold_metrics(data: Path, image_ids: pd.Series, components: np.ndarray, reward: np.ndarray) -> dict[str, float]:
    """Spearman of each head with its gold score and of R with the gold utility (evaluation only)."""
    gold = pd.read_parquet(data / "gold" / "gold.parquet").set_index("image_id").loc[np.asarray(image_ids)]
    out = {c: spearman(components[:, i], gold[c].to_numpy()) for i, c in enumerate(COMPONENTS)}
    out["reward"] = spearman(reward, gold["utility"].to_numpy())
    return out
