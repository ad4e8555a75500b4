"""Everything tryon-lite's trainer and its VITON recipe take from the shared training code, in one place.

The loop, the trainer base class and the warp trainer come from issue 11's trainers (branch `trainers`); the
dataset readers and the evaluation from its datasets (branch `datasets`). Should their names move, only these
imports change.
"""

from training.config import TrainConfig, trainer_options
from training.data.dataset import TryOnDataset, open_dataset
from training.data.formats import resize
from training.data.raw import derive
from training.eval.evaluate import GARMENT_LABELS, InProcessChain, evaluate, predict_or_refuse
from training.eval.metrics import l1, ssim
from training.loop import checkpoint_dirs, train
from training.losses.vgg import perceptual_loss
from training.trainers.base import ModuleTrainer
from training.trainers.warp import WarpOptions, WarpTrainer

__all__ = [
    "GARMENT_LABELS",
    "InProcessChain",
    "ModuleTrainer",
    "TrainConfig",
    "TryOnDataset",
    "WarpOptions",
    "WarpTrainer",
    "checkpoint_dirs",
    "derive",
    "evaluate",
    "l1",
    "open_dataset",
    "perceptual_loss",
    "predict_or_refuse",
    "resize",
    "ssim",
    "train",
    "trainer_options",
]
