"""IE-Net's estimator in plain larq layers, and the library's own model factory.

larq resolves our quantizers by name once `ienet_tf` is imported, so any larq model can
train with IEE; `IEESchedule` finds their sharpness `q` wherever it is. Runs as written on
the embedded digits in under a minute: `python examples/larq_layers.py`.
"""

import larq as lq
import tensorflow as tf

import ienet_tf  # noqa: F401  (registers "iee_sign" and "iee_act_sign" with larq)
from ienet_tf import callbacks, cost, data, models

train = data.load("digits", "train", batch_size=64, training=True)
test = data.load("digits", "test", batch_size=256, training=False)
binary = {"input_quantizer": "iee_act_sign", "kernel_quantizer": "iee_sign", "use_bias": False}

# 1. A plain larq network with the IEE quantizers.
model = tf.keras.Sequential(
    [
        tf.keras.Input(data.info("digits").input_shape),
        tf.keras.layers.Conv2D(32, 3, padding="same", use_bias=False),
        tf.keras.layers.BatchNormalization(),
        lq.layers.QuantConv2D(64, 3, padding="same", pad_values=1.0, **binary),
        tf.keras.layers.BatchNormalization(),
        lq.layers.QuantConv2D(64, 3, strides=2, padding="same", pad_values=1.0, **binary),
        tf.keras.layers.BatchNormalization(),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(10),
    ]
)
lq.models.summary(model)
# larq's profile counts the binary convolutions; ours also splits IE-BC's K branches.
print(f"binary ops {cost.model_cost(model).binary_ops}, FP MACs {cost.model_cost(model).fp_macs}")


def fit(model: tf.keras.Model, epochs: int = 10) -> float:
    """Train with the IEE schedule; the test accuracy."""
    model.compile(
        tf.keras.optimizers.Adam(0.01),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train, epochs=epochs, callbacks=[callbacks.IEESchedule(epochs=epochs)], verbose=2)
    return model.evaluate(test, verbose=0)[1]


print("larq + IEE, test accuracy:", fit(model))

# 2. A network of the registry (larq-zoo style): the paper's variants by name.
net = models.build("convnet", variant="ienet", k=2, num_classes=10, input_shape=(8, 8, 1))
print("models.build('convnet', 'ienet'), test accuracy:", fit(net))

# Both save and load as .keras with their q values (after `import ienet_tf`).
net.save("convnet_ienet.keras")
restored = tf.keras.models.load_model("convnet_ienet.keras")
print("reloaded, test accuracy:", restored.evaluate(test, verbose=0)[1])
