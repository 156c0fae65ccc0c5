"""Input pipelines: batched, normalised `tf.data` data sets for training and evaluation.

```python
from ienet_tf import data

data.available()  # ('cifar10', 'digits', 'fashion_mnist', 'imagenet2012')
data.info("cifar10").input_shape  # (32, 32, 3)
train = data.load("fashion_mnist", "train", batch_size=128, training=True)
test = data.load("fashion_mnist", "test", batch_size=256, training=False)
```

| name | from | training augmentation |
|---|---|---|
| `digits` | scikit-learn's 8x8 digits, stratified 80/20 | none (shuffle only) |
| `fashion_mnist` | IDX files (`dataset-fashion-mnist`) | pad 2, crop 28, flip |
| `cifar10` | tfds, prepared in `data_dir` | pad 4, crop 32, flip |
| `imagenet2012` | tfds, prepared from `manual_dir` | resized crop 224 (0.08-1.25), flip |

Nothing is downloaded unless asked (`download=True` for the tfds data sets): missing or
corrupt data raises `DataError` saying how to get it.
"""

from ienet_tf.data import augment, idx
from ienet_tf.data.catalog import DataError, DatasetInfo, available, info
from ienet_tf.data.pipeline import load

__all__ = ["DataError", "DatasetInfo", "augment", "available", "idx", "info", "load"]
