r"""IR²Net: information restriction (a training wrapper) and information recovery (a head).

**Information restriction** (training only, no parameters). From the final-stage
features `F` (B, h, w, C) of the first forward pass, with `E = mean_c F^2` (B, h, w):

\\[
A_{b,i,j} = \frac{E_{b,i,j}}{\max(\lVert E_{b,:,j} \rVert_2, 10^{-12})},\quad
\tilde A = \operatorname{bilinear}_{ac}(A \to H \times W),\quad
M = [\tilde A > \tau \cdot \operatorname{mean}_{hw} \tilde A],\quad
\mathcal{L} = \tfrac12\left(\mathcal{L}(f(x), y) + \mathcal{L}(f(M \odot x), y)\right)
\\]

with τ = 0.15 and no gradient through the mask. This is the release exactly: its
`F.normalize(x.pow(2).mean(1))` normalises the (B, h, w) map along dim 1, i.e. every
COLUMN over the rows (`attention_norm="column"`), and it upsamples bilinearly with
`align_corners=True`. `attention_norm="map"` normalises the whole map per sample (what a
reading of the paper suggests; on peaked maps it keeps far fewer pixels), and
`align_corners=False` upsamples with half-pixel centres. `InformationRestriction` wraps any Keras
classifier and does this in `train_step`; evaluation and prediction run the plain model.

**Information recovery** (a model option) is `ienet_tf.models.recovery`: the registry's
`+ir2net` variants fuse the shallow feature maps into the final ones before the head.
"""

from __future__ import annotations

import numbers

import tensorflow as tf

from ienet_tf.compat import inbound_layers
from ienet_tf.registration import register

__all__ = [
    "ATTENTION_NORMS",
    "DEFAULT_ERASE_THRESHOLD",
    "InformationRestriction",
    "attention_map",
    "erase_mask",
    "final_features_layer",
    "inference_model",
]

DEFAULT_ERASE_THRESHOLD = 0.15
#: How the attention map is L2-normalised: each column over the rows (the release) or the
#: whole map per sample.
ATTENTION_NORMS = ("column", "map")
_NORM_EPSILON = 1e-12  # PyTorch's F.normalize: x / max(||x||, eps)


def attention_map(features: tf.Tensor, attention_norm: str = "column") -> tf.Tensor:
    """(B, h, w, C) features -> (B, h, w, 1): channel mean of squares, L2-normalised
    over the rows of each column (`"column"`, the release) or over the whole map
    (`"map"`), per sample."""
    if attention_norm not in ATTENTION_NORMS:
        raise ValueError(
            f"Unknown `attention_norm` {attention_norm!r}; allowed: {list(ATTENTION_NORMS)}."
        )
    energy = tf.reduce_mean(tf.square(features), axis=-1, keepdims=True)
    axes = [1] if attention_norm == "column" else [1, 2]
    norm = tf.sqrt(tf.reduce_sum(tf.square(energy), axis=axes, keepdims=True))
    return energy / tf.maximum(norm, _NORM_EPSILON)


def erase_mask(
    features: tf.Tensor,
    image_size,
    threshold: float = DEFAULT_ERASE_THRESHOLD,
    attention_norm: str = "column",
    align_corners: bool = True,
):
    """The 0/1 mask (B, H, W, 1) of the input pixels information restriction keeps: the
    attention map (`attention_map`) upsampled bilinearly to `image_size` (corners aligned,
    as PyTorch's `align_corners=True`, or half-pixel centres) above `threshold` x its
    per-sample mean. No gradient flows through it."""
    attention = attention_map(features, attention_norm)
    if align_corners:
        attention = tf.raw_ops.ResizeBilinear(
            images=attention, size=image_size, align_corners=True, half_pixel_centers=False
        )
    else:
        attention = tf.image.resize(attention, image_size, method="bilinear")
    mean = tf.reduce_mean(attention, axis=[1, 2], keepdims=True)
    return tf.stop_gradient(tf.cast(attention > threshold * mean, attention.dtype))


def final_features_layer(classifier: tf.keras.Model) -> str:
    """The name of the layer whose output is the final-stage feature map of a model built
    by `ienet_tf.models.build`: the last input of its recovery head (`+ir2net`), else the
    input of its classifier head (global pooling or flatten)."""
    for consumer in ("recovery_concat", "pool", "flatten"):
        try:
            layer = classifier.get_layer(consumer)
        except ValueError:
            continue
        return inbound_layers(layer)[-1].name
    raise ValueError(
        f"{classifier.name!r} has no recovery head, pooling or flatten layer to find its "
        "final features from; pass `feature_layer` explicitly."
    )


def _check_threshold(threshold) -> float:
    if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool) or threshold < 0:
        raise ValueError(f"`erase_threshold` must be a number >= 0, got {threshold!r}.")
    return float(threshold)


@register
class InformationRestriction(tf.keras.Model):
    """Trains `classifier` with IR²Net's information restriction; runs it plainly otherwise.

    `feature_layer` names the layer of `classifier` whose output are the final-stage
    features. Each training step runs two forward passes (the input, then the input
    erased where the first pass paid little attention) and minimises the mean of the two
    losses (the regularization losses are counted once). Metrics are those of the first,
    unerased pass. `call`, `evaluate` and `predict` are the classifier's.

    ```python
    model = InformationRestriction(classifier, feature_layer="stage3_unit6_out")
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(images, labels)
    model.classifier.save("deploy.keras")  # the plain model, for export
    ```
    """

    def __init__(
        self,
        classifier: tf.keras.Model,
        feature_layer: str,
        erase_threshold: float = DEFAULT_ERASE_THRESHOLD,
        attention_norm: str = "column",
        align_corners: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("name", f"{classifier.name}_restricted")
        super().__init__(**kwargs)
        try:
            features = classifier.get_layer(feature_layer).output
        except ValueError as error:
            raise ValueError(
                f"InformationRestriction: {classifier.name!r} has no layer {feature_layer!r} "
                "to take the final-stage features from; pass `feature_layer` = the name of "
                "the layer whose output is the last stage's feature map."
            ) from error
        if features.shape.rank != 4:
            raise ValueError(
                f"InformationRestriction: layer {feature_layer!r} outputs shape "
                f"{features.shape}; the attention map needs (batch, height, width, channels)."
            )
        self.classifier = classifier
        self.feature_layer = feature_layer
        self.erase_threshold = _check_threshold(erase_threshold)
        if attention_norm not in ATTENTION_NORMS:
            raise ValueError(
                f"Unknown `attention_norm` {attention_norm!r}; allowed: {list(ATTENTION_NORMS)}."
            )
        self.attention_norm = attention_norm
        self.align_corners = bool(align_corners)
        # Shares the classifier's layers; kept out of Keras' tracking so that the saved
        # weights are the classifier's alone.
        object.__setattr__(
            self, "_with_features", tf.keras.Model(classifier.inputs, [features, classifier.output])
        )
        self.build(classifier.input_shape)

    @classmethod
    def wrap(
        cls,
        classifier: tf.keras.Model,
        erase_threshold: float = DEFAULT_ERASE_THRESHOLD,
        attention_norm: str = "column",
        align_corners: bool = True,
    ) -> InformationRestriction:
        """Wrap a model built by `ienet_tf.models.build` (its final features found by
        `final_features_layer`) for training with information restriction."""
        return cls(
            classifier,
            final_features_layer(classifier),
            erase_threshold,
            attention_norm=attention_norm,
            align_corners=align_corners,
        )

    def call(self, inputs, training=None):
        return self.classifier(inputs, training=training)

    def restricted_inputs(self, images: tf.Tensor, features: tf.Tensor) -> tf.Tensor:
        """`images` with the pixels of low attention zeroed (no gradient through the mask)."""
        mask = erase_mask(
            features,
            tf.shape(images)[1:3],
            self.erase_threshold,
            self.attention_norm,
            self.align_corners,
        )
        return images * mask

    def train_step(self, data):
        x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            features, y_pred = self._with_features(x, training=True)
            y_erased = self.classifier(self.restricted_inputs(x, features), training=True)
            # compute_loss adds the regularization losses to each pass: their mean counts
            # them once. The loss tracker averages the two calls: the logged loss is this.
            loss = 0.5 * (
                self.compute_loss(x, y, y_pred, sample_weight)
                + self.compute_loss(x, y, y_erased, sample_weight)
            )
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def get_config(self):
        return {
            "classifier": tf.keras.saving.serialize_keras_object(self.classifier),
            "feature_layer": self.feature_layer,
            "erase_threshold": self.erase_threshold,
            "attention_norm": self.attention_norm,
            "align_corners": self.align_corners,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        classifier = tf.keras.saving.deserialize_keras_object(
            config.pop("classifier"), custom_objects=custom_objects
        )
        return cls(classifier, **config)


def inference_model(model: tf.keras.Model) -> tf.keras.Model:
    """The model to evaluate, cost or export: the classifier inside a training wrapper."""
    return model.classifier if isinstance(model, InformationRestriction) else model
