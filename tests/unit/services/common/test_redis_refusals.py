"""Which error replies refuse a record (it goes to the DLQ) and which reflect the server's
state (the publish waits), as redis-py parses them."""

from __future__ import annotations

import pytest
from redis._parsers.base import BaseParser

from services.common.redis import refuses_record


@pytest.mark.parametrize(
    "reply",
    [
        "ERR The ID specified in XADD must be greater than 0-0",
        "ERR Invalid stream ID specified as stream command argument",
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "ERR Error running script (call to f_0123): @user_script:9: WRONGTYPE Operation",
    ],
)
def test_errors_about_the_record_refuse_it(reply: str) -> None:
    assert refuses_record(BaseParser.parse_error(reply))


@pytest.mark.parametrize(
    "reply",
    [
        "OOM command not allowed when used memory > 'maxmemory'.",
        "READONLY You can't write against a read only replica.",
        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist",
        "BUSY Redis is busy running a script.",
        "NOSCRIPT No matching script. Please use EVAL.",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "NOPERM this user has no permissions to run the 'evalsha' command",
    ],
)
def test_errors_about_the_server_do_not(reply: str) -> None:
    assert not refuses_record(BaseParser.parse_error(reply))
