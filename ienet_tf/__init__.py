"""ienet-tf: information-enhanced binary neural networks (IE-Net) for TensorFlow / Larq.

```python
from ienet_tf import callbacks, layers, quantizers
```
"""

from ienet_tf import callbacks, layers, quantizers, schedule

__version__ = "0.1.0"

__all__ = ["__version__", "callbacks", "layers", "quantizers", "schedule"]
