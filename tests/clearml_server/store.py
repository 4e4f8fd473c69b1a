"""The server's documents, in memory, and how ``*.get_all`` selects and shapes them, as
clearml-server's ``GetMixin`` does (``apiserver/database/model/base.py``):

- a pattern field (``name``) is a regular expression searched in the value (Mongo ``$regex``);
- a list field (each model's own: a task's ``id``, ``project``, ``status``, ``type``, ``tags``,
  ``system_tags``, ``parent``, ``user``; a model's ``task``, ``framework``, ``uri``, ``ready`` …;
  ``get_all_query_options`` in ``database/model/``) takes a list of values: OR by default; ``__$all``/``__$and`` switch the
  values after them to AND, ``__$any``/``__$or`` back to OR, ``__$not`` excludes the next value, a
  leading ``-`` excludes a value while no operator was given (``NewListFieldBucketHelper``,
  ``get_list_field_query``); the groups combine with the first operator given (AND by default);
- ``only_fields`` projects dotted paths (``script.version_num``); ``id`` is always returned;
- ``order_by`` sorts by fields (``-`` descending); ``page``/``page_size`` page the result;
- a hidden document (system tag ``hidden``) is left out unless ``search_hidden``
  (``apiserver/services/tasks.py`` ``_hidden_query``).
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from tests.clearml_server.http import bad_request

PATTERN_FIELDS = ("name",)
OPERATORS = {"__$all": "and", "__$and": "and", "__$any": "or", "__$or": "or"}


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> str:
    return datetime.now(UTC).isoformat()


def _values(doc: dict[str, Any], field: str) -> list[Any]:
    value = get_path(doc, field)
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def list_field_matches(doc: dict[str, Any], field: str, terms: Sequence[Any]) -> bool:
    """Whether ``doc[field]`` meets the list-field query ``terms`` (see the module's text)."""
    if not isinstance(terms, list | tuple):
        terms = [terms]
    actions: dict[str, list[Any]] = {"all": [], "in": [], "nin": []}
    context, global_op, negate, legacy, allow_empty = "or", None, False, True, False
    for term in terms:
        if term is None:
            allow_empty = True
            continue
        if isinstance(term, str) and term in OPERATORS:
            context = OPERATORS[term]
            global_op = global_op or context
            legacy = False
            continue
        if term == "__$nop":  # back to the default context
            context, legacy = "or", True
            continue
        if term == "__$not":
            negate = True
            continue
        global_op = global_op or "and"  # a value first: the groups combine with AND
        include = not negate
        if not negate and legacy and isinstance(term, str) and term.startswith("-"):
            term, include = term[1:], False
        negate = False
        actions["all" if context == "and" and include else "in" if include else "nin"].append(term)
    have = _values(doc, field)
    checks = []
    if actions["all"]:
        checks.append(all(v in have for v in actions["all"]))
    if actions["in"]:
        checks.append(any(v in have for v in actions["in"]))
    if actions["nin"]:
        checks.append(not any(v in have for v in actions["nin"]))
    combine = any if (global_op or "and") == "or" else all
    matched = combine(checks) if checks else True
    return matched or (allow_empty and not have)


def get_path(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def project(doc: dict[str, Any], only: Iterable[str] | None) -> dict[str, Any]:
    """``doc`` with only the ``only_fields`` paths (and its id); a copy either way."""
    if not only:
        return copy.deepcopy(doc)
    out: dict[str, Any] = {"id": doc["id"]}
    for path in only:
        parts = path.split(".")
        node: Any = doc
        for part in parts:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None and not (isinstance(doc.get(parts[0]), dict) or parts[0] in doc):
            continue
        target = out
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = copy.deepcopy(node)
    return out


class Collection:
    """One kind of document (tasks, projects, queues, models, workers) by id."""

    def __init__(self, kind: str, invalid: tuple[int, str], list_fields: tuple[str, ...]) -> None:
        self.kind = kind
        self.invalid = invalid  # (subcode, message) of errors.conf for an unknown id
        self.list_fields = ("id", *list_fields)  # what get_all filters by (others are ignored)
        self.docs: dict[str, dict[str, Any]] = {}

    def add(self, doc: dict[str, Any]) -> dict[str, Any]:
        self.docs[doc["id"]] = doc
        return doc

    def get(self, doc_id: Any) -> dict[str, Any]:
        doc = self.docs.get(str(doc_id)) if doc_id else None
        if doc is None:
            subcode, msg = self.invalid
            raise bad_request(subcode, msg, id=doc_id)
        return doc

    def select(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """``*.get_all`` (see the module's text); returns projected copies."""
        found = []
        for doc in self.docs.values():
            hidden = "hidden" in (doc.get("system_tags") or [])
            if hidden and not query.get("search_hidden") and "id" not in query:  # by id: found
                continue
            if not self._matches(doc, query):
                continue
            found.append(doc)
        for key in reversed(_as_list(query.get("order_by"))):
            descending = key.startswith("-")
            field = key.lstrip("-+")
            found.sort(key=lambda d, f=field: str(get_path(d, f) or ""), reverse=descending)
        page, size = query.get("page"), query.get("page_size")
        if size:
            start = int(page or 0) * int(size)
            found = found[start : start + int(size)]
        return [project(doc, query.get("only_fields")) for doc in found]

    def _matches(self, doc: dict[str, Any], query: dict[str, Any]) -> bool:
        for field in PATTERN_FIELDS:
            pattern = query.get(field)
            if pattern:
                try:
                    if not re.search(pattern, str(doc.get(field) or "")):
                        return False
                except re.error as e:
                    raise bad_request(21, "malformed regular expression", error=str(e)) from None
        for field in self.list_fields:
            terms = query.get(field)
            if terms is not None and not list_field_matches(doc, field, terms):
                return False
        return True


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
