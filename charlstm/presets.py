"""Named model and training sizes, for `charlstm train --preset NAME`.

A preset is a starting point, not a mode: it fills in the options the user
did not give, and an option given on the command line (or as a keyword to
`charlstm.train`) always wins. The measured losses and times for each preset
are in docs/benchmarks.md, "Presets".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from charlstm.errors import ConfigError
from charlstm.flags import flag


@dataclass(frozen=True)
class Preset:
    name: str
    purpose: str  # what it is for, as `charlstm train --help` lists it
    model: Mapping[str, Any] = field(default_factory=dict)  # ModelConfig fields
    train: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig fields

    def __post_init__(self) -> None:
        # Read-only views of copies: a caller that changed a preset's values
        # would change every later run's (a reader's check, 2026-12-05).
        object.__setattr__(self, "model", MappingProxyType(dict(self.model)))
        object.__setattr__(self, "train", MappingProxyType(dict(self.train)))


PRESETS = {
    p.name: p
    for p in (
        Preset(
            "tiny",
            "a quick try: about a minute on a laptop CPU",
            # Measured as the plain cell without dropout, the defaults before
            # 2026-11-25: too short a run for either to pay for its cost.
            model={"hidden_size": 128, "num_layers": 2, "embed_dim": 32, "norm": "none"},
            # A small model takes a large learning rate: on the shipped corpus
            # 2e-2 reached 1.614 in 900 steps where 3e-3 reached 2.034 in
            # 600 (2026-11-24, 2-core CPU; 1e-2: 1.677).
            train={
                "steps": 900,
                "batch_size": 32,
                "learning_rate": 2e-2,
                "warmup_steps": 50,
                "weight_decay": 0.0,  # measured without; too short a run to overfit
                "dropout": 0.0,
                "eval_every": 150,
                "checkpoint_every": 150,
            },
        ),
        # The defaults: tuned for the lowest validation loss in a 10-minute run
        # on a 2-core CPU (see benchmarks/time_to_quality.py).
        Preset("small", "the defaults: 7-11 minutes on a 2-core CPU"),
        Preset(
            "medium",
            "about an hour on one GPU",
            # The plain cell without dropout, as designed before layer norm and
            # dropout became the CPU defaults: neither is measured on a GPU yet.
            model={"hidden_size": 512, "num_layers": 3, "embed_dim": 128, "norm": "none"},
            train={
                "steps": 40_000,
                "batch_size": 128,
                "seq_len": 128,
                "learning_rate": 2e-3,
                "dropout": 0.0,
                "warmup_steps": 500,
                "eval_every": 1000,
                "checkpoint_every": 1000,
                "log_every": 50,
            },
        ),
        Preset(
            "large",
            "a long GPU run on a large corpus",
            model={"hidden_size": 1024, "num_layers": 3, "embed_dim": 256, "norm": "none"},
            train={
                "steps": 200_000,
                "batch_size": 256,
                "seq_len": 256,
                "learning_rate": 1e-3,
                "dropout": 0.0,
                "warmup_steps": 2000,
                "eval_every": 2500,
                "checkpoint_every": 2500,
                "log_every": 100,
            },
        ),
    )
}


def get(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"{flag('preset')} must be one of {', '.join(PRESETS)}, got {name!r}") from None


def apply(name: str | None, model: dict[str, Any], train: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The preset's values under the explicitly given `model` and `train` ones."""
    if name is None:
        return model, train
    preset = get(name)
    return {**preset.model, **model}, {**preset.train, **train}
