"""`manage.py demo_loop` (`make demo-loop`) refuses bad arguments with a clear message. Its stages are
aesplatform.modeling.demo.run_loop, which tests/integration/test_loop_end_to_end.py runs with a real worker.
(Its "no worker answers" refusal is not tested here: the test Redis is shared, and another session's worker may
answer the ping.)"""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command


@pytest.mark.django_db
def test_bad_arguments_are_refused():
    with pytest.raises(CommandError, match="cannot exceed"):
        call_command("demo_loop", "--annotators", "1", "--redundancy", "2", stdout=io.StringIO())
    with pytest.raises(CommandError, match="at least 20"):
        call_command("demo_loop", "--images", "5", stdout=io.StringIO())
