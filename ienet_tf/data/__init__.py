"""Input pipelines: batched, normalised `tf.data` data sets for training and evaluation.

```python
from ienet_tf import data

data.available()  # ('cifar10', 'digits', 'fashion_mnist', 'imagenet2012')
data.info("cifar10").input_shape  # (32, 32, 3)
train = data.load("fashion_mnist", "train", batch_size=128, training=True)
test = data.load("fashion_mnist", "test", batch_size=256, training=False)
```

One record per data set (`ienet_tf.data.registry`) says what it is, where its examples
come from and how they are augmented.

Nothing is downloaded unless asked (`download=True` for the tfds data sets): missing or
corrupt data raises `DataError` saying how to get it.
"""

from ienet_tf.data import augment, idx
from ienet_tf.data.catalog import DatasetInfo
from ienet_tf.data.pipeline import load
from ienet_tf.data.registry import DatasetRecord, available, info, record

__all__ = [
    "DatasetInfo",
    "DatasetRecord",
    "augment",
    "available",
    "idx",
    "info",
    "load",
    "record",
]
