"""The ocpp library's JSON schemas, compiled to Python functions, with jsonschema as the judge.

Checking a payload with the library's ``jsonschema`` validator (``iter_errors`` and
``best_match``) costs ~380 us for a MeterValues of 5 sampled values, half of what the gateway
spends on such a message. The same schema files compiled by ``fastjsonschema`` into one Python
function check it in ~35 us. Valid payloads, nearly all of the traffic, take only that path.

jsonschema stays the reference: a payload the compiled function refuses is judged again by the
library's validator, whose best match names the field and the rule exactly as before
(``rpc._describe``); should the two ever disagree (the compiled function refusing what
jsonschema takes), jsonschema's verdict stands, so validation is exactly as strict as the
library's. The compiled functions are built as the library's validators are: draft-04 for every
file, formats not checked (the library's ``Draft4Validator`` has no format checker; timestamps
are parsed by the handlers), and never filling in the schemas' defaults (the payload reaches the
handler as the station sent it). ``tests/ingest/ocppj/test_schemas.py`` holds the two to the
same verdicts on mutants of every action's payload.

Why fastjsonschema rather than a native validator (jsonschema_rs checks the same payload in
~3 us): it is pure Python, so it installs wherever the service does, and the code it generates
from the library's files can be read and follows draft-04's types to the letter (1.0 is not an
integer, true is not a number); the ~30 us between them is under a tenth of a message's cost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import fastjsonschema
from jsonschema import Draft4Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError, best_match  # type: ignore[import-untyped]
from ocpp.messages import get_validator

__all__ = ["first_error"]

_Check = Callable[[Any], Any]
_DRAFT_04 = "http://json-schema.org/draft-04/schema#"
_compiled: dict[tuple[int, str, str], tuple[_Check, Draft4Validator]] = {}
_compiling = threading.Lock()  # the event loop and the gateway's worker thread both check


def first_error(
    message_type: int, action: str, version: str, payload: dict[str, Any]
) -> ValidationError | None:
    """The most relevant schema violation of ``payload`` (jsonschema's ``best_match``), or
    None when it is valid. Raises as ``ocpp.messages.get_validator`` does for an unknown
    action."""
    check, reference = _validators(message_type, action, version)
    try:
        check(payload)
    except fastjsonschema.JsonSchemaException:
        return best_match(reference.iter_errors(payload))
    return None


def _validators(message_type: int, action: str, version: str) -> tuple[_Check, Draft4Validator]:
    key = (message_type, action, version)
    found = _compiled.get(key)
    if found is None:
        with _compiling:
            found = _compiled.get(key)
            if found is None:
                reference = get_validator(message_type, action, version)
                # The library checks every file as draft-04, whatever its "$schema" says (the
                # 2.0.1 files say draft-06, where 1.0 is an integer): so must the compiled one.
                schema = {**reference.schema, "$schema": _DRAFT_04}
                check = fastjsonschema.compile(schema, use_default=False, use_formats=False)
                found = _compiled[key] = (check, reference)
    return found
