"""Greedy weight averaging of a search's fine-tuned models (a "model soup", Wortsman et al. 2022).

Fine-tunes of one parent stay in one basin of the loss, so their weights
can be averaged, and the average usually generalises better than any one
of them: picking one model by a few held-out labels favours the one that
fits those labels by chance. :func:`greedy_soup` takes the models best
first and adds each to the average only where the average's validation
score does not drop; the first (best) model alone is the fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dendriteseg.models.files import ModelInfo, load_model
from dendriteseg.train.wise import average_weights

__all__ = ["Soup", "average_weights", "greedy_soup"]


@dataclass
class Soup:
    """The averaged model, the files in it, and its validation score."""

    model: torch.nn.Module
    info: ModelInfo
    members: list[Path]
    value: float


def greedy_soup(paths: list[Path], score: Callable[[Any], float]) -> Soup:
    """Average the models in ``paths`` (best first), keeping each only if ``score`` does not drop."""
    model, info = load_model(paths[0])
    states = [{k: v.detach().clone() for k, v in model.state_dict().items()}]
    members, best = [paths[0]], score(model)
    for path in paths[1:]:
        candidate, other = load_model(path)
        if other.architecture != info.architecture or other.arguments != info.arguments:
            continue
        trial_states = [*states, candidate.state_dict()]
        model.load_state_dict(average_weights(trial_states))
        value = score(model)
        if value >= best:
            states, best = trial_states, value
            members.append(path)
    model.load_state_dict(average_weights(states))
    return Soup(model.eval(), info, members, best)
