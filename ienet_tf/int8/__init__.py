"""Binary + int8: the real-valued remainder of a binary network in 8 bits.

`qat_model` turns a trained model into its int8 quantization-aware (QAT) counterpart,
`calibrate` sets its fake-quant ranges, `model.fit` fine-tunes it, and
`ienet_tf.export.to_tflite(qat, path, inputs, int8=True)` converts it with LCE into a
`.tflite` whose binary convolutions are `LceBconv2d` and everything else int8, verified op
by op and against the QAT model (`ienet_tf.export.int8_verify`).

```python
from ienet_tf import export, int8

qat = int8.qat_model(trained, train_images)  # BatchNorms folded, ranges calibrated
qat.compile(optimizer, loss, metrics)
qat.fit(train_data, epochs=2)  # the QAT fine-tune, at ~1/100 of the training rate
export.to_tflite(qat, "model_int8.tflite", test_images, int8=True)
```
"""

from ienet_tf.int8.fake_quant import (
    DEFAULT_EMA_DECAY,
    ActFakeQuant,
    FakeQuantOwner,
    calibrate,
    fake_quant_owners,
    is_calibrated,
    nudged_range,
)
from ienet_tf.int8.layers import (
    Int8Conv2D,
    Int8Dense,
    Int8DepthwiseConv2D,
    Int8ElasticLink,
    Int8IEBinaryConv2D,
    round_to_int8,
)
from ienet_tf.int8.qat import is_qat_model, qat_model

__all__ = [
    "DEFAULT_EMA_DECAY",
    "ActFakeQuant",
    "FakeQuantOwner",
    "Int8Conv2D",
    "Int8Dense",
    "Int8DepthwiseConv2D",
    "Int8ElasticLink",
    "Int8IEBinaryConv2D",
    "calibrate",
    "fake_quant_owners",
    "is_calibrated",
    "is_qat_model",
    "nudged_range",
    "qat_model",
    "round_to_int8",
]
