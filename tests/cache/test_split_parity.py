"""Our splits equal the reference code's, which stratifies on the CSVs' numeric ``class_idx``.

The reference builds StratifiedKFold + StratifiedShuffleSplit on ``int(class_idx)`` of every
row in CSV order; we stratify on class indices in ``cache.taxonomy.CLASSES`` order. Both give
the same ids because the code -> class_idx map is one-to-one and increasing in our class
order (scikit-learn's splitters depend on the labels only through their partition and sort
order). This is checked here by running the reference procedure independently.
"""

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

from cache.splits import PRESETS, make_split
from cache.taxonomy import CLASSES, TOP_DIGIT, top_of


def class_idx_of(code: str) -> int:
    """The BSD numbering: top digit, then the sub-class position within its top level (1-based)."""
    top = top_of(code)
    subs = [c for c in CLASSES if top_of(c) == top]
    return 100 * TOP_DIGIT[top] + subs.index(code) + 1


def reference_split(ids, class_idx, fold, fold_seed, val_seed):
    """The reference's procedure, written from its description: folds and validation on class_idx."""
    y = np.asarray(class_idx)
    trval, test = list(StratifiedKFold(5, shuffle=True, random_state=fold_seed).split(np.zeros(len(y)), y))[
        fold
    ]
    sss = StratifiedShuffleSplit(n_splits=1, test_size=0.2, random_state=val_seed)
    tr, va = next(sss.split(np.zeros(len(trval)), y[trval]))
    ids = np.asarray(ids, dtype=object)
    return ids[trval[tr]].tolist(), ids[trval[va]].tolist(), ids[test].tolist()


def test_class_idx_numbering_is_increasing_in_class_order():
    numbers = [class_idx_of(c) for c in CLASSES]
    assert numbers[:3] == [101, 102, 103] and numbers[-1] == 504
    assert numbers == sorted(numbers) and len(set(numbers)) == len(CLASSES)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("fold", [0, 3])
def test_split_ids_equal_the_reference_procedure(preset, fold):
    rng = np.random.default_rng(7)
    counts = rng.integers(12, 60, size=len(CLASSES))  # imbalanced, every class >= 5 folds
    labels = rng.permutation(np.repeat(np.arange(len(CLASSES)), counts))
    ids = [str(100000 + 7 * k) for k in range(len(labels))]
    ours = make_split(ids, labels, preset=preset, fold=fold)
    ref = reference_split(ids, [class_idx_of(CLASSES[i]) for i in labels], fold, *PRESETS[preset])
    assert (ours.train, ours.val, ours.test) == ref
