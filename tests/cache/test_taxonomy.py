import numpy as np
import pytest

from cache.taxonomy import (
    CLASS_INDEX,
    CLASS_TOP_INDEX,
    CLASSES,
    NUM_CLASSES,
    TOP_LEVELS,
    LabelKind,
    UnknownClassError,
    code_to_index,
    credit_matrix,
    index_to_code,
    parse_label,
    top_of,
)


def test_fixed_order_and_tops():
    assert NUM_CLASSES == 23 and len(set(CLASSES)) == 23
    assert CLASSES[:3] == ("m-sp", "m-si", "m-m") and CLASSES[-1] == "ss-s"
    assert CLASS_INDEX["fx-a"] == 15 and index_to_code(15) == "fx-a"
    assert TOP_LEVELS == ("m", "is", "sp", "fx", "ss")
    assert [int((CLASS_TOP_INDEX == t).sum()) for t in range(5)] == [3, 5, 3, 8, 4]
    assert top_of("fx-ex") == "fx" and code_to_index(" FX-EX ") == CLASS_INDEX["fx-ex"]


@pytest.mark.parametrize(
    "code,idx,kind,top",
    [
        ("fx-a", "415", LabelKind.TARGET, "fx"),
        ("fx", "400", LabelKind.TOP_ONLY, "fx"),
        ("fx-other", "499", LabelKind.OTHER, "fx"),
        ("", "400", LabelKind.TOP_ONLY, "fx"),
        ("", "399", LabelKind.OTHER, "sp"),
        ("", "100.0", LabelKind.TOP_ONLY, "m"),
        (None, None, LabelKind.MISSING, None),
    ],
)
def test_parse_label_kinds(code, idx, kind, top):
    p = parse_label(code, idx)
    assert p.kind is kind and p.top == top
    assert (p.index is not None) == (kind is LabelKind.TARGET)


def test_unknown_class_names_value_and_row():
    with pytest.raises(UnknownClassError, match=r"meta.csv row 7: unknown class 'fx-zz'"):
        parse_label("fx-zz", "4xx", where="meta.csv row 7")
    with pytest.raises(UnknownClassError, match="'412'"):
        parse_label("", "412")
    with pytest.raises(UnknownClassError):
        code_to_index("xx-other")


def test_credit_matrix():
    c = credit_matrix()
    assert c.shape == (23, 23)
    assert c[CLASS_INDEX["m-sp"], CLASS_INDEX["m-sp"]] == 1
    assert c[CLASS_INDEX["m-m"], CLASS_INDEX["m-sp"]] == 0.375
    assert c[CLASS_INDEX["fx-a"], CLASS_INDEX["m-sp"]] == 0
    np.testing.assert_array_equal(c, c.T)
    # each row: 1 + 0.375 * (siblings) ; fx has 8 classes
    assert c[CLASS_INDEX["fx-a"]].sum() == pytest.approx(1 + 7 * 0.375)
