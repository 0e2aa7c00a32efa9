"""NCCO validation against the SDK's action models: what Vonage would accept.

The adapter owns this: both providers validate an NCCO before sending it, and the
dev harness validates what the product answers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from vonage_voice.errors import NccoActionError
from vonage_voice.models import ncco as actions

_ACTION_MODELS: dict[str, type[BaseModel]] = {
    "talk": actions.Talk,
    "connect": actions.Connect,
    "record": actions.Record,
    "input": actions.Input,
    "stream": actions.Stream,
    "notify": actions.Notify,
    "conversation": actions.Conversation,
    "wait": actions.Wait,
    "transfer": actions.Transfer,
}


class InvalidNcco(ValueError):
    pass


def ncco_validate(ncco: Any) -> list[BaseModel]:
    """Parse an NCCO with the SDK's models; raise InvalidNcco naming the first bad action."""
    if not isinstance(ncco, list) or not ncco:
        raise InvalidNcco("An NCCO is a non-empty JSON array of actions.")
    parsed = []
    for index, item in enumerate(ncco):
        if not isinstance(item, dict):
            raise InvalidNcco(f"Action {index} is not an object.")
        model = _ACTION_MODELS.get(str(item.get("action")))
        if model is None:
            raise InvalidNcco(f"Action {index} has unknown action {item.get('action')!r}.")
        data = {("from_" if k == "from" else k): v for k, v in item.items()}
        try:
            parsed.append(model.model_validate(data))
        except (ValidationError, NccoActionError) as exc:
            raise InvalidNcco(f"Action {index} ({item.get('action')}) is invalid: {exc}") from exc
    return parsed
