"""ienet-tf: information-enhanced binary neural networks (IE-Net) for TensorFlow / Larq.

```python
import os

# TensorFlow's C++ start-up lines are noise for a library user; set before TF is imported
# (an explicit TF_CPP_MIN_LOG_LEVEL wins).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ienet_tf import callbacks  # noqa: E402, layers, quantizers
from ienet_tf.ir2net import InformationRestriction  # IR²Net training wrapper
```

Importing the package registers every custom Keras object (quantizers, layers, model
blocks), so `tf.keras.models.load_model` reads saved ienet-tf models after `import ienet_tf`.
"""

import os

# TensorFlow's C++ start-up lines are noise for a library user; set before TF is imported
# (an explicit TF_CPP_MIN_LOG_LEVEL wins).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ienet_tf import callbacks, elastic_link, ir2net, layers, models, quantizers, schedule

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "callbacks",
    "elastic_link",
    "ir2net",
    "layers",
    "models",
    "quantizers",
    "schedule",
]
