"""Schemathesis hooks (loaded through ``SCHEMATHESIS_HOOKS``): non-finite numbers.

JSON Schema numbers are finite, so schemathesis never generates NaN or an infinity by itself,
and its JSON encoder refuses them; these hooks put them where a client could. A JSON object
body gets, in some cases, one of its numbers replaced by ``NaN``, ``Infinity``,
``-Infinity``, ``1e309`` or ``-1e400`` (sent as bytes, written as the text is: Python's JSON
reader takes each as a non-finite float); a query gets, in some cases, one value replaced by
a spelling of one (``nan``, ``inf``, ``-Infinity``, ``1e400``).
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from hypothesis import strategies as st

NON_FINITE_JSON = ("NaN", "Infinity", "-Infinity", "1e309", "-1e400")
NON_FINITE_TEXT = st.sampled_from(["nan", "NaN", "inf", "-Infinity", "1e400", "-1e309"])
MARK = "\u0000non-finite\u0000"  # stands for the number while the rest is encoded


def _numbers(value: dict[str, Any]) -> list[str]:
    return sorted(
        k for k, v in value.items() if isinstance(v, int | float) and not isinstance(v, bool)
    )


def with_non_finite(body: dict[str, Any], key: str, spelling: str) -> bytes:
    """``body`` as JSON text with ``body[key]`` written as ``spelling``."""
    return json.dumps({**body, key: MARK}).replace(json.dumps(MARK), spelling, 1).encode()


@schemathesis.hook
def flatmap_body(_context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    if not isinstance(body, dict) or not _numbers(body):
        return st.just(body)
    replaced = st.builds(
        with_non_finite,
        st.just(body),
        st.sampled_from(_numbers(body)),
        st.sampled_from(NON_FINITE_JSON),
    )
    return st.one_of(st.just(body), replaced)


@schemathesis.hook
def flatmap_query(
    _context: schemathesis.HookContext, query: dict[str, Any] | None
) -> st.SearchStrategy[Any]:
    if not query:
        return st.just(query)
    replaced = st.tuples(st.sampled_from(sorted(query)), NON_FINITE_TEXT).map(
        lambda change: {**query, change[0]: change[1]}
    )
    return st.one_of(st.just(query), replaced)
