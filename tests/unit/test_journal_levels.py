"""What a state directory's journal lets go of, and when (pipeline/statedir/journal.py):
never a topic someone may still write, and a retiring one before its owner deletes it."""

from pipeline.config import TopicSettings
from pipeline.statedir.journal import Levels

LEVELS = Levels(TopicSettings(sources="tweets"), "agg.state.")


def test_levels_follow_what_is_made_from_what():
    assert [LEVELS.of(t) for t in ("chunks.g4", "tweets", "partials.g4", "documents", "agg.state.0.g2", "totals")] == [
        0,
        0,
        1,
        1,
        2,
        3,
    ]


def test_a_retiring_chunks_generation_goes_at_once_and_its_partials_once_read():
    topics = ["chunks.g1", "chunks.g1.retiring", "chunks.g2", "chunks.g3", "partials.g1", "partials.g2", "partials.g3"]
    now, once_read = LEVELS.done_with(topics)
    assert now == {"chunks.g1"}
    assert once_read == {"partials.g1"}


def test_superseded_chunks_are_kept_while_a_writer_may_still_write_them():
    now, once_read = LEVELS.done_with(["chunks.g1", "chunks.g2", "partials.g1", "partials.g2"])
    assert now == set() and once_read == set()  # an upload still in progress may write chunks.g1


def test_partials_of_a_deleted_generation_and_superseded_changelogs_go_once_read():
    now, once_read = LEVELS.done_with(["chunks.g2", "partials.g1", "partials.g2", "agg.state.0.g1", "agg.state.0.g2"])
    assert now == set() and once_read == {"partials.g1", "agg.state.0.g1"}


def test_status_reports_are_never_kept():
    """They repeat every second; a restarted stack's new processes report anew."""
    now, _ = LEVELS.done_with(["chunks.g1", "workers.g7", "workers.g8", "assignments"])
    assert now == {"workers.g7", "workers.g8"}
