import math

import numpy_reference as ref
import pytest

from ienet_tf.schedule import iee_q, iee_r, validate_schedule

# SPEC.md §1, the schedule for E = 400: (e, q, r, peak r*sqrt3*q, support 2*sqrt3/(3q)).
SPEC_TABLE = [
    (0, 0.01, 100.0, 1.732, 115.5),
    (200, 0.316, 3.16, 1.732, 3.65),
    (399, 9.83, 1.0, 17.0, 0.117),
]


@pytest.mark.parametrize("epoch, q, r, peak, support", SPEC_TABLE)
def test_schedule_matches_spec_table(epoch, q, r, peak, support):
    # The table prints 3 significant figures: agree to half a unit in the third.
    got_q = iee_q(epoch, 400)
    got_r = iee_r(got_q)
    assert got_q == pytest.approx(q, rel=5e-3)
    assert got_r == pytest.approx(r, rel=5e-3)
    assert got_r * math.sqrt(3) * got_q == pytest.approx(peak, rel=5e-3)
    assert 2 * math.sqrt(3) / (3 * got_q) == pytest.approx(support, rel=5e-3)


@pytest.mark.parametrize("epochs, t_min, t_max", [(400, -2.0, 1.0), (7, -1.5, 0.5), (1, 0, 2)])
def test_schedule_matches_reference_every_epoch(epochs, t_min, t_max):
    for epoch in range(epochs):
        expected = ref.schedule_q(epoch, epochs, t_min, t_max)
        assert iee_q(epoch, epochs, t_min, t_max) == pytest.approx(expected, rel=1e-12)
        assert iee_r(expected) == pytest.approx(ref.schedule_r(expected), rel=1e-12)


def test_last_epoch_is_not_exactly_t_max_and_later_epochs_hold_it():
    assert iee_q(399, 400) == pytest.approx(10 ** (1 - 3 / 400))
    assert iee_q(400, 400) == pytest.approx(10.0)
    assert iee_q(1000, 400) == pytest.approx(10.0)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": -3}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"epochs": True}, "epochs"),
        ({"t_min": 1.0, "t_max": 1.0}, "t_min"),
        ({"t_min": 2.0, "t_max": 1.0}, "t_min"),
        ({"t_min": float("nan")}, "t_min"),
        ({"t_max": "1"}, "t_max"),
    ],
)
def test_invalid_schedule_arguments_name_the_argument(kwargs, argument):
    args = {"epochs": 10, "t_min": -2.0, "t_max": 1.0, **kwargs}
    with pytest.raises(ValueError, match=f"`{argument}`"):
        validate_schedule(**args)


@pytest.mark.parametrize("epoch", [-1, 1.5, None])
def test_invalid_epoch(epoch):
    with pytest.raises(ValueError, match="`epoch`"):
        iee_q(epoch, 10)


@pytest.mark.parametrize("q", [0, -1.0, float("nan")])
def test_invalid_q_for_r(q):
    with pytest.raises(ValueError, match="`q`"):
        iee_r(q)
