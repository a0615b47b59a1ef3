"""JSON encodings of LiveKit's protobuf messages, as the Go server writes them.

Two flavours are in use on the real server:

* Twirp JSON responses: Go ``protojson`` with ``UseProtoNames`` and ``EmitUnpopulated``:
  snake_case names, every field present with its zero value, unset singular message fields as
  ``null``, fields inside a oneof (including proto3 ``optional``) left out when unset.
* Webhook bodies: plain ``protojson``: lowerCamelCase names, zero values left out.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict, Parse, ParseError
from google.protobuf.message import DecodeError, Message

M = TypeVar("M", bound=Message)

_MESSAGE = FieldDescriptor.TYPE_MESSAGE


# Fields livekit-protocol 1.1.29 has and livekit-server 1.13.5 does not: the real server
# cannot emit them, so its JSON answers do not carry them.
NEWER_THAN_SERVER: dict[str, frozenset[str]] = {
    "livekit.JobState": frozenset({"reason"}),
}


def _fill_unpopulated(msg: Message, out: dict[str, Any]) -> None:
    for name in NEWER_THAN_SERVER.get(msg.DESCRIPTOR.full_name, ()):
        out.pop(name, None)
    for field in msg.DESCRIPTOR.fields:
        if field.type != _MESSAGE:
            continue
        name = field.name
        entry: Any = field.message_type
        if entry.GetOptions().map_entry:
            value_field = entry.fields_by_name["value"]
            if value_field.type == _MESSAGE:
                mapping = getattr(msg, name)
                for key, sub in out.get(name, {}).items():
                    _fill_unpopulated(mapping[_map_key(field, key)], sub)
            continue
        if field.is_repeated:
            for sub_msg, sub_out in zip(getattr(msg, name), out.get(name, []), strict=False):
                _fill_unpopulated(sub_msg, sub_out)
            continue
        if msg.HasField(name):
            _fill_unpopulated(getattr(msg, name), out[name])
        elif field.containing_oneof is None:
            out[name] = None


def _map_key(field: Any, key: str) -> Any:
    key_type = field.message_type.fields_by_name["key"].type
    if key_type == FieldDescriptor.TYPE_STRING:
        return key
    if key_type == FieldDescriptor.TYPE_BOOL:
        return key == "true"
    return int(key)


def twirp_dict(msg: Message) -> dict[str, Any]:
    out = MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _fill_unpopulated(msg, out)
    return out


def twirp_json(msg: Message) -> bytes:
    return json.dumps(twirp_dict(msg), separators=(",", ":")).encode()


def webhook_json(msg: Message) -> str:
    return json.dumps(MessageToDict(msg), separators=(",", ":"))


class MalformedRequest(Exception):
    pass


def parse_json(body: bytes, cls: type[M]) -> M:
    try:
        return Parse(body.decode("utf-8") or "{}", cls(), ignore_unknown_fields=True)
    except (ParseError, UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest(str(exc)) from exc


def parse_protobuf(body: bytes, cls: type[M]) -> M:
    msg = cls()
    try:
        msg.ParseFromString(body)
    except DecodeError as exc:
        raise MalformedRequest(str(exc)) from exc
    return msg
