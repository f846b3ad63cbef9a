"""GET /v1/totals pages: every word once, whatever their lengths, with cursors that fit in a
URL, from one instance or merged from several."""

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregator import paging, views

N = paging.CURSOR_CHARS
WORDS = st.builds(
    lambda stem, n, tail: stem * n + tail,
    st.sampled_from(["a", "b", "ab", "é"]),
    st.sampled_from([1, 3, N - 1, N, N + 1, 2 * N]),
    st.text(alphabet="abé\U0001f600", max_size=3),
)


def pages_of(instances: list[tuple[str, ...]], limit: int) -> tuple[list[str], list[str]]:
    """Every word, paged as the results API pages them; and the cursors it handed out."""
    seen: list[str] = []
    cursors: list[str] = []
    after = ""
    while True:
        parts = []
        for words in instances:
            start = paging.position(words, after)
            page = words[start : start + limit]
            parts.append({"totals": [(w, 1) for w in page], "more": start + limit < len(words)})
        page = views.merged_page(parts, limit)
        seen += page["totals"]
        if page["next"] is None:
            return seen, cursors
        after = page["next"]
        cursors.append(after)


@settings(max_examples=300, deadline=None)
@given(words=st.sets(WORDS, max_size=40), limit=st.integers(1, 7), split=st.integers(1, 3))
def test_every_word_once_in_paging_order_with_short_cursors(words, limit, split):
    instances = [tuple(paging.ordered(w for i, w in enumerate(sorted(words)) if i % split == n)) for n in range(split)]
    seen, cursors = pages_of(instances, limit)
    assert seen == paging.ordered(words)
    assert all(len(c) <= paging.CURSOR_CHARS + paging.DIGEST_CHARS for c in cursors)


def test_word_order_unless_words_share_their_first_cursor_chars():
    long = ["x" * N + "b", "x" * N + "a", "x" * N + "c"]
    ordered = paging.ordered(["y", "x" * N, *long, "w"])
    assert ordered[:2] == ["w", "x" * N] and ordered[-1] == "y"
    assert ordered[2:5] == sorted(long, key=paging.digest)


def test_a_cursor_is_the_word_or_its_head_and_digest():
    assert paging.cursor("apple") == "apple"
    word = "z" * 65_000
    assert paging.cursor(word) == "z" * N + paging.digest(word)


def test_a_client_may_start_after_any_word():
    words = tuple(paging.ordered(["a", "c", "b" * 500, "b" * 600]))
    assert words[paging.position(words, "b") :] == words[1:]
    assert words[paging.position(words, words[1]) :] == words[2:]  # a long word given whole
    assert paging.position(words, "d") == len(words)


def test_any_cursor_a_client_sends_is_a_place_to_start_never_an_error():
    """Empty, a token's length with a tail that is not a digest, a lone surrogate, 100,000
    characters: each is read as a word to start after."""
    words = tuple(paging.ordered(["a", "b" * 300, "c"]))
    assert paging.position(words, "") == 0
    not_a_token = "b" * N + "z" * paging.DIGEST_CHARS  # read as the word it is: it pages among the b run
    at = paging.position(words, not_a_token)
    assert all(paging.key(w) <= paging.key(not_a_token) for w in words[:at])
    assert all(paging.key(w) > paging.key(not_a_token) for w in words[at:]) and words[-1] == "c" and at < 3
    assert paging.position(words, "\ud800") == len(words)
    assert paging.position(words, "a" * 100_000) == 1


class _Reads(tuple):
    """Words that count how many of them are read."""

    reads = 0

    def __getitem__(self, index):
        type(self).reads += 1
        return super().__getitem__(index)


def test_a_page_starts_among_long_words_sharing_a_head_by_bisection():
    """An upload can make the run of words that share their first CURSOR_CHARS characters as
    long as it likes: finding where a page starts in it reads a logarithmic few of them."""
    head = "h" * N
    words = _Reads(paging.ordered(["a", *(head + f"{i:05d}" for i in range(20_000)), "z"]))
    middle = words[10_000]
    _Reads.reads = 0
    at = paging.position(words, paging.cursor(middle))
    assert words[at - 1] == middle
    assert _Reads.reads < 100
