"""`say`: the sentence a notebook prints is its template filled with the run's numbers."""

import pytest

from transformer_course.prose import say


def test_say_fills_the_template_with_the_computed_values():
    shown = say("loss {loss:.3f} after {steps} steps, {word}", loss=1.23456, steps=300, word="lower")
    assert shown.data == "loss 1.235 after 300 steps, lower"


def test_say_refuses_a_template_with_a_missing_value():
    with pytest.raises(KeyError, match="steps"):
        say("loss {loss} after {steps} steps", loss=1.0)
