"""Hypothesis fuzzing of every config field and every control a link can set: each value is
either accepted (and then valid) or rejected with a message naming the field and its range."""

import math

from conftest import TALLY
from hypothesis import given, settings
from hypothesis import strategies as st

from bnviz import TrainConfig
from bnviz.config import FIELDS
from bnviz.ui import controls

ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 1e-300, 1e300, 2**31, 2**63]),
    st.text(max_size=20),
    st.sampled_from(["", "batch", "none", "sgd", "adam", "relu", "shapes", "before", "torch"]),
    st.lists(st.integers(min_value=-5, max_value=300), max_size=8),
    st.tuples(st.integers(min_value=-5, max_value=300)),
)


@settings(max_examples=60, deadline=None)
@given(field=st.sampled_from(FIELDS), value=ANYTHING)
def test_every_config_field_accepts_or_names_itself(field, value):
    TALLY["config fuzz cases"] += 1
    try:
        config = TrainConfig(**{field: value})
    except ValueError as e:
        assert field in str(e).split(" must ")[0], str(e)  # "batch_size x widths[0] must ..."
        return
    assert TrainConfig.from_dict(config.to_dict()) == config
    for name in ("eps", "lr"):
        assert math.isfinite(getattr(config, name))


@settings(max_examples=80, deadline=None)
@given(key=st.sampled_from(list(controls.CONTROLS)), text=st.text(max_size=30))
def test_every_link_value_parses_to_a_widget_value_or_names_the_control(key, text):
    TALLY["link fuzz cases"] += 1
    try:
        value = controls.parse(key, text)
    except ValueError as e:
        assert str(e).startswith(key), str(e)
        assert "<" not in str(e) and "[" not in str(e).split("got")[-1]
        return
    choices = controls.CONTROLS[key][1]
    if choices is not None:
        assert value in choices
    elif key == "momentum":
        assert 0 <= value <= 1
    else:
        assert 0 <= value <= controls.MAX_SEED


@settings(max_examples=40, deadline=None)
@given(
    key=st.sampled_from(list(controls.CONTROLS)),
    number=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers()),
)
def test_numbers_in_links_are_checked_like_widget_input(key, number):
    TALLY["link fuzz cases"] += 1
    text = repr(number)
    try:
        value = controls.parse(key, text)
    except ValueError:
        return
    assert controls.parse(key, controls.to_text(value)) == value
