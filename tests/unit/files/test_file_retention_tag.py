"""retention_tag: the lifecycle rule a file's bytes fall under never deletes them before the record expires."""
import pytest

from batchgate.domain.files import MAX_RETENTION_DAYS, retention_tag

DAY = 86400


@pytest.mark.parametrize("lifetime, tag", [
    (3600, "retention-days=1"),           # the shortest expires_after
    (DAY, "retention-days=1"),
    (DAY + 1, "retention-days=2"),        # rounded up, never down
    (30 * DAY, "retention-days=30"),      # the longest expires_after and the batch default
    (0, "retention-days=1"),
    (MAX_RETENTION_DAYS * DAY, f"retention-days={MAX_RETENTION_DAYS}"),
    (MAX_RETENTION_DAYS * DAY + 1, None),  # no rule covers it: keep the bytes rather than lose them early
])
def test_retention_tag_rounds_the_lifetime_up_to_whole_days(lifetime, tag):
    assert retention_tag(1_700_000_000, 1_700_000_000 + lifetime) == tag


def test_files_that_never_expire_get_no_tag():
    assert retention_tag(1_700_000_000, None) is None
