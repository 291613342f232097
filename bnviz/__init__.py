"""bnviz: watch batch normalization work while a small CNN trains."""

from .batchnorm import BatchNorm2d
from .config import TrainConfig
from .datasets import DatasetUnavailable
from .record import Run
from .trainer import Lockstep, Trainer, train

__all__ = [
    "BatchNorm2d",
    "DatasetUnavailable",
    "Lockstep",
    "Run",
    "TrainConfig",
    "Trainer",
    "train",
]
__version__ = "0.1.0"
