"""Data sets: scikit-learn digits, MNIST and MNIST5 from idx files, MNIST-1D, 2-D toys, and users' data files."""

from .dataset import Dataset
from .datasets import DATASETS, SCALES, is_data_path, load_dataset, preprocess, resolve_data_dir, with_levels
from .files import load_file
from .idx import read_idx
from .levels import Levels, detect_feature_levels, detect_levels
from .toys import moons, pinwheel, two_circles

__all__ = [
    "DATASETS",
    "Dataset",
    "load_dataset",
    "load_file",
    "is_data_path",
    "preprocess",
    "SCALES",
    "with_levels",
    "Levels",
    "detect_levels",
    "detect_feature_levels",
    "resolve_data_dir",
    "read_idx",
    "pinwheel",
    "two_circles",
    "moons",
]
