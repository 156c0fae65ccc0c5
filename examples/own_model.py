"""Your own Keras model with IE-Net layers: `model.fit`, then a verified LCE export.

Runs as written on scikit-learn's 8x8 digits (embedded, no download) in about a minute on
two CPU cores: `python examples/own_model.py`. It is the README's quick start.
"""

import numpy as np
import tensorflow as tf

from ienet_tf import callbacks, data, export, layers

train = data.load("digits", "train", batch_size=64, training=True)
test = data.load("digits", "test", batch_size=256, training=False)

E = 20
x = tf.keras.Input(data.info("digits").input_shape)
y = tf.keras.layers.Conv2D(32, 3, padding="same")(x)  # first layer stays float
y = tf.keras.layers.BatchNormalization()(y)
y = layers.IEBinaryConv2D(64, 3, k=2)(y)  # IE-BC with IEE weights
y = tf.keras.layers.BatchNormalization()(y)
y = layers.IEBinaryConv2D(64, 3, k=2, strides=2)(y)
y = tf.keras.layers.BatchNormalization()(y)
y = tf.keras.layers.GlobalAveragePooling2D()(y)
model = tf.keras.Model(x, tf.keras.layers.Dense(10)(y))  # last layer stays float

model.compile(
    tf.keras.optimizers.Adam(0.01),
    tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
model.fit(train, epochs=E, callbacks=[callbacks.IEESchedule(epochs=E)], verbose=2)
print("test accuracy:", model.evaluate(test, verbose=0)[1])

# Convert with LCE and keep the file only if it runs binary kernels and matches Keras.
images = np.concatenate([batch for batch, _ in test])[:64]
result = export.to_tflite(model, "model.tflite", images)  # + model.tflite.json
print(result.op_histogram)  # {'LceBconv2d': 4, 'LceQuantize': 4, ...}
print(result.parity)  # LCE interpreter vs Keras
