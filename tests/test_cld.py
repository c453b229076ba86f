"""The compact letter display of the league tables (insert-and-absorb, Piepho 2004) on hand-worked examples."""

import itertools

import numpy as np

from initstudy.report import compact_letters


def differ(*pairs: str) -> set[frozenset]:
    return {frozenset(p) for p in pairs}


def test_nothing_differs_one_letter_everything_differs_one_each():
    assert compact_letters(list("ABCD"), set()) == dict.fromkeys("ABCD", "a")
    every = {frozenset(p) for p in itertools.combinations("ABC", 2)}
    assert compact_letters(list("ABC"), every) == {"A": "a", "B": "b", "C": "c"}


def test_a_letter_shared_across_an_arm_in_between():
    # A-B differ. Insert: {A,B,C} splits into {B,C} and {A,C}; nothing to absorb. Sorted by best member:
    # {A,C} = a, {B,C} = b. A and C share 'a' with B ranked between them.
    assert compact_letters(list("ABC"), differ("AB")) == {"A": "a", "B": "b", "C": "ab"}


def test_absorption_the_textbook_staircase():
    # A-C, A-D, B-D differ. {ABCD} -A/C-> {BCD}, {ABD}; -A/D-> {BCD}, {BD}, {AB}; absorb {BD} (inside {BCD});
    # -B/D-> {CD}, {BC}, {AB}. Letters by best member: {AB} a, {BC} b, {CD} c.
    assert compact_letters(list("ABCD"), differ("AC", "AD", "BD")) == {"A": "a", "B": "ab", "C": "bc", "D": "c"}


def test_two_crossing_differences_share_letters_non_contiguously():
    # A-B and C-D differ. {ABCD} -A/B-> {BCD}, {ACD}; -C/D-> {BD}, {BC}, {AD}, {AC}; none inside another.
    # Sorted by ranks of members: {AC} (0, 2) a, {AD} (0, 3) b, {BC} (1, 2) c, {BD} (1, 3) d.
    got = compact_letters(list("ABCD"), differ("AB", "CD"))
    assert got == {"A": "ab", "B": "cd", "C": "ac", "D": "bd"}


def test_letters_are_valid_on_random_patterns():
    """Share a letter exactly when not in `differ`; no letter is redundant (each holds a pair no other holds or a
    lone arm)."""
    rng = np.random.default_rng(3)
    arms = [f"arm{i}" for i in range(7)]
    for _ in range(200):
        sig = {frozenset(p) for p in itertools.combinations(arms, 2) if rng.random() < 0.4}
        letters = compact_letters(arms, sig)
        for a, b in itertools.combinations(arms, 2):
            assert bool(set(letters[a]) & set(letters[b])) == (frozenset((a, b)) not in sig)
        groups = [{a for a in arms if ch in letters[a]} for ch in sorted(set("".join(letters.values())))]
        assert not any(g < h for g in groups for h in groups)  # absorbed: no group inside another
