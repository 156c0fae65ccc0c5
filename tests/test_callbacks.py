import larq as lq
import numpy as np
import numpy_reference as ref
import pytest
import tensorflow as tf

from ienet_tf import callbacks, layers, quantizers
from ienet_tf.errors import UsageError
from ienet_tf.schedule import iee_q


def _tiny_model(nested: bool = False) -> tf.keras.Model:
    inputs = tf.keras.Input((6, 6, 2))
    x = tf.keras.layers.Conv2D(8, 3, padding="same")(inputs)
    block_in = tf.keras.Input((6, 6, 8))
    block = tf.keras.Model(
        block_in,
        tf.keras.layers.BatchNormalization()(layers.IEBinaryConv2D(8, 3, k=2)(block_in)),
        name="block",
    )
    x = (tf.keras.Sequential([block], name="outer") if nested else block)(x)
    x = layers.IEBinaryConv2D(8, 3, k=1)(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(x))
    model.compile("sgd", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6, 6, 2)).astype(np.float32), rng.integers(0, 3, n)


class _RecordQ(tf.keras.callbacks.Callback):
    """Records, at each epoch's start (after IEESchedule), every quantizer's q."""

    def __init__(self):
        super().__init__()
        self.seen = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.seen[epoch] = [float(q.q.numpy()) for q in callbacks.iee_quantizers(self.model)]


@pytest.mark.parametrize("nested", [False, True])
def test_schedule_reaches_every_quantizer_including_nested_models(nested):
    model = _tiny_model(nested)
    found = list(callbacks.iee_quantizers(model))
    # Two IE-BC layers, each with an IEE kernel quantizer and an IEE activation estimator.
    assert sorted(type(q).__name__ for q in found) == sorted(["IEESign", "IEEActivationSign"] * 2)
    record = _RecordQ()
    x, y = _data()
    history = model.fit(
        x, y, epochs=4, verbose=0, callbacks=[callbacks.IEESchedule(epochs=4), record]
    )
    for epoch in range(4):
        assert record.seen[epoch] == pytest.approx([ref.schedule_q(epoch, 4)] * 4, rel=1e-6)
    assert history.history["iee_q"] == pytest.approx([ref.schedule_q(e, 4) for e in range(4)])


def test_custom_t_range_and_resume_with_initial_epoch():
    model = _tiny_model()
    record = _RecordQ()
    x, y = _data()
    schedule = callbacks.IEESchedule(epochs=10, t_min=-1.0, t_max=0.5)
    model.fit(x, y, epochs=8, initial_epoch=6, verbose=0, callbacks=[schedule, record])
    assert sorted(record.seen) == [6, 7]
    for epoch in (6, 7):
        expected = ref.schedule_q(epoch, 10, -1.0, 0.5)
        assert record.seen[epoch] == pytest.approx([expected] * 4, rel=1e-6)


class _Interrupt(tf.keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise RuntimeError("simulated crash")


def _fit_with_backup(backup, extra_callback):
    x, y = _data()
    model = _tiny_model()
    callbacks_ = [
        tf.keras.callbacks.BackupAndRestore(backup),
        callbacks.IEESchedule(epochs=5),
        extra_callback,
    ]
    model.fit(x, y, epochs=5, verbose=0, callbacks=callbacks_)


def test_resume_with_backup_and_restore_gives_the_epochs_q(tmp_path):
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit_with_backup(backup, _Interrupt(at_epoch=3))
    # A new process would rebuild the model from scratch, with q at its initial value.
    tf.keras.backend.clear_session()
    record = _RecordQ()
    _fit_with_backup(backup, record)
    assert sorted(record.seen) == [3, 4]
    assert record.seen[3] == pytest.approx([ref.schedule_q(3, 5)] * 4, rel=1e-6)


def test_schedule_on_a_model_without_iee_quantizers_warns(caplog):
    model = tf.keras.Sequential([tf.keras.layers.Dense(2, input_shape=(3,))])
    model.compile("sgd", "mse")
    with caplog.at_level("WARNING"):
        model.fit(
            np.zeros((4, 3)),
            np.zeros((4, 2)),
            verbose=0,
            callbacks=[callbacks.IEESchedule(epochs=1)],
        )
    assert "no IEE quantizer" in caplog.text


def test_a_schedule_longer_than_the_fit_warns_where_q_ends(caplog):
    model = tf.keras.Sequential(
        [lq.layers.QuantDense(2, kernel_quantizer="iee_sign", input_shape=(3,))]
    )
    model.compile("sgd", "mse")
    data = np.zeros((4, 3)), np.zeros((4, 2))
    with caplog.at_level("WARNING"):
        model.fit(*data, epochs=2, verbose=0, callbacks=[callbacks.IEESchedule(epochs=10)])
    expected = iee_q(1, 10, -2.0, 1.0)
    assert f"IEESchedule(epochs=10) in a fit of 2 epochs: q ends at {expected:.3g}" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        model.fit(*data, epochs=2, verbose=0, callbacks=[callbacks.IEESchedule(epochs=2)])
    assert "IEESchedule(epochs=" not in caplog.text


def test_quantizer_itself_is_found():
    quantizer = quantizers.IEESign()
    assert list(callbacks.iee_quantizers(quantizer)) == [quantizer]


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"epochs": 0}, "`epochs`"),
        ({"epochs": -1}, "`epochs`"),
        ({"epochs": 3.0}, "`epochs`"),
        ({"epochs": 5, "t_min": 1.0, "t_max": -2.0}, "`t_min`"),
        ({"epochs": 5, "t_min": 0.5, "t_max": 0.5}, "`t_min`"),
    ],
)
def test_invalid_callback_arguments(kwargs, argument):
    with pytest.raises(ValueError) as error:
        callbacks.IEESchedule(**kwargs)
    assert argument in str(error.value)


def test_callback_config_round_trip():
    schedule = callbacks.IEESchedule(epochs=12, t_min=-1.0, t_max=2.0)
    restored = callbacks.IEESchedule(**schedule.get_config())
    assert restored.get_config() == schedule.get_config()
    assert restored.q_at(6) == pytest.approx(ref.schedule_q(6, 12, -1.0, 2.0))


class _RecordBeforeStep(tf.keras.callbacks.Callback):
    """Records `read(model)` before every training step (after the callbacks before it)."""

    def __init__(self, read):
        super().__init__()
        self.read = read
        self.seen = []

    def on_train_batch_begin(self, batch, logs=None):
        self.seen.append(self.read(self.model))


def _fit_recording(model, callback, read, initial_epoch: int = 0):
    """Fit epochs `initial_epoch`..2 of 4 steps (16 examples, batch 4) with `callback`;
    returns what `read(model)` gave before every step, and the history."""
    x, y = _data(16)
    record = _RecordBeforeStep(read)
    history = model.fit(
        x,
        y,
        batch_size=4,
        epochs=3,
        initial_epoch=initial_epoch,
        verbose=0,
        callbacks=[callback, record],
    )
    return record.seen, history


def _step_q(model):
    """The q of the model's quantizers (one value: they must agree)."""
    (q,) = {float(quantizer.q.numpy()) for quantizer in callbacks.iee_quantizers(model)}
    return q


def _step_lr(model):
    return float(model.optimizer.learning_rate.numpy())


def test_per_step_schedule_sets_q_before_every_step_and_resumes_at_the_step():
    model = _tiny_model()
    schedule = callbacks.IEESchedule(epochs=3, steps_per_epoch=4)
    seen, history = _fit_recording(model, schedule, _step_q)
    assert seen == pytest.approx([ref.schedule_q(s, 12) for s in range(12)], rel=1e-6)
    # The epoch logs carry the q of the epoch's last step.
    assert history.history["iee_q"] == pytest.approx(
        [ref.schedule_q(4 * e + 3, 12) for e in range(3)]
    )
    # Resuming at epoch 2 starts at step 8.
    resumed = callbacks.IEESchedule(epochs=3, steps_per_epoch=4)
    seen, _ = _fit_recording(model, resumed, _step_q, initial_epoch=2)
    assert seen == pytest.approx([ref.schedule_q(s, 12) for s in range(8, 12)], rel=1e-6)
    assert schedule.get_config()["steps_per_epoch"] == 4


def test_per_step_learning_rate_is_set_before_every_step_and_resumes_at_the_step():
    def schedule(epoch, step):
        return 0.1 / (1 + 4 * epoch + step)

    model = _tiny_model()
    seen, history = _fit_recording(model, callbacks.PerStepLearningRate(schedule), _step_lr)
    assert seen == pytest.approx([0.1 / (1 + s) for s in range(12)], rel=1e-6)
    # The epoch logs carry the learning rate of the epoch's last step.
    assert history.history["lr"] == pytest.approx([0.1 / (4 * e + 4) for e in range(3)])
    resumed = callbacks.PerStepLearningRate(schedule)
    seen, _ = _fit_recording(model, resumed, _step_lr, initial_epoch=2)
    assert seen == pytest.approx([0.1 / (1 + s) for s in range(8, 12)], rel=1e-6)


@pytest.mark.parametrize("steps", [0, -1, 2.5, True])
def test_per_step_schedule_rejects_bad_steps(steps):
    with pytest.raises(ValueError, match="`steps_per_epoch` must be a positive integer or None"):
        callbacks.IEESchedule(epochs=3, steps_per_epoch=steps)


@pytest.mark.parametrize("nested", [False, True])
def test_batch_norm_reestimation_validates_with_the_statistics_of_the_batches(nested):
    tf.keras.utils.set_random_seed(0)
    x, y = _data(32)
    batches = [x[:8], (x[8:16], y[8:16])]  # images, or (images, labels) pairs
    model = _tiny_model(nested)
    reestimation = callbacks.BatchNormReestimation(batches)
    history = model.fit(
        x, y, batch_size=8, epochs=2, validation_data=(x[16:], y[16:]), verbose=0,
        callbacks=[reestimation],
    )  # fmt: skip
    assert reestimation.batches_used == 2
    (bn,) = [m for m in model.submodules if isinstance(m, tf.keras.layers.BatchNormalization)]
    # numpy reference: the mean over the batches of the statistics of the BN's input
    stem, block = model.layers[1], next(m for m in model.submodules if m.name == "block")
    images = [b[0] if isinstance(b, tuple) else b for b in batches]
    inputs = [block.layers[1](stem(b)).numpy() for b in images]
    mean = np.mean([i.mean(axis=(0, 1, 2)) for i in inputs], 0)
    # Keras' fused 4-D kernel keeps the unbiased variance
    variance = np.mean([i.var(axis=(0, 1, 2), ddof=1) for i in inputs], 0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), variance, rtol=1e-4, atol=1e-5)
    # the logged validation loss is the model's as it is now
    now = model.evaluate(x[16:], y[16:], verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(now, rel=1e-5)


def test_batch_norm_reestimation_refuses_what_would_fail_after_an_epoch():
    x, y = _data(8)
    with pytest.raises(UsageError, match="an iterator"):
        callbacks.BatchNormReestimation(iter([x]))
    model = tf.keras.Sequential([tf.keras.Input((6, 6, 2)), tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(3)])  # fmt: skip
    model.compile("sgd", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    weights = [w.numpy() for w in model.weights]
    with pytest.raises(UsageError, match="no BatchNormalization layer"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.BatchNormReestimation([x])])
    for before, after in zip(weights, model.weights, strict=True):
        np.testing.assert_array_equal(after.numpy(), before)  # refused before any step
