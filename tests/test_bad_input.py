"""Every bad input gives an InputError that names the argument and what is allowed."""
import re

import pytest

import hpcfit
from bad_cases import ALL_RANKS, CASES


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_a_clear_error(name):
    build, match = CASES[name]
    kw = build(True)
    with pytest.raises(hpcfit.InputError) as info:
        hpcfit.curve_fit(kw.pop("f"), kw.pop("xdata"), kw.pop("ydata"), verbose=0, **kw)
    assert re.search(match, str(info.value)), str(info.value)


@pytest.mark.parametrize("name", sorted(set(CASES) - ALL_RANKS))
def test_the_good_variant_fits(name):
    """The same call without the defect works, so each case tests exactly one defect."""
    build, _ = CASES[name]
    kw = build(False)
    res = hpcfit.curve_fit(kw.pop("f"), kw.pop("xdata"), kw.pop("ydata"), verbose=0, **kw)
    assert res.success
