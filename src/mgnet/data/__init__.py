"""Datasets: the embedded 8x8 digits now; torchvision-format datasets plug into the same
registry (:func:`register_dataset`)."""

from mgnet.data.datasets import (
    DatasetInfo,
    DataSplits,
    RandomShift,
    TensorImageDataset,
    dataset_info,
    get_dataset,
    list_datasets,
    register_dataset,
)
from mgnet.data.sampler import EpochSampler

__all__ = [
    "DataSplits",
    "DatasetInfo",
    "EpochSampler",
    "RandomShift",
    "TensorImageDataset",
    "dataset_info",
    "get_dataset",
    "list_datasets",
    "register_dataset",
]
