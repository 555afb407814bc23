"""Riemann's protobuf messages (Msg, Event, Attribute, ...), built at import time from riemann.proto.

Why not commit protoc's output: a generated module pins the protobuf runtime to at least the protoc
that made it (today's output imports google.protobuf.runtime_version, which 4.x lacks, and refuses an
older runtime) and registers Riemann's package-less names (Event, Msg) in the process-wide descriptor
pool, where another library's copy would clash. Reading the shipped .proto keeps it the only source,
works with every protobuf from 4.25 on, and uses a private pool. The reader knows just what the file
uses (proto2 messages of scalar and message fields) and refuses anything else; a test compiles the
same file with protoc and checks both agree.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
    "int64": _F.TYPE_INT64,
    "sint64": _F.TYPE_SINT64,
    "float": _F.TYPE_FLOAT,
    "double": _F.TYPE_DOUBLE,
}
_LABELS = {"optional": _F.LABEL_OPTIONAL, "required": _F.LABEL_REQUIRED, "repeated": _F.LABEL_REPEATED}
_MESSAGE = re.compile(r"message\s+(\w+)\s*\{([^{}]*)\}")
_FIELD = re.compile(r"(optional|required|repeated)\s+(\w+)\s+(\w+)\s*=\s*(\d+)\s*;")
_HEADER = re.compile(r'syntax\s*=\s*"proto2"\s*;|option\s+\w+\s*=\s*"[^"]*"\s*;')


def parse(text: str, name: str = "riemann.proto") -> descriptor_pb2.FileDescriptorProto:
    """The descriptor of a proto2 file made only of messages with scalar or message fields."""
    text = re.sub(r"//[^\n]*", "", text)
    proto = descriptor_pb2.FileDescriptorProto(name=name)
    messages = _MESSAGE.findall(text)
    names = {message for message, _ in messages}
    for message, body in messages:
        out = proto.message_type.add(name=message)
        for label, kind, field, number in _FIELD.findall(body):
            if kind not in _SCALARS and kind not in names:
                raise ValueError(f"{name}: unknown type {kind} in message {message}")
            entry = out.field.add(name=field, number=int(number), label=_LABELS[label])
            if kind in _SCALARS:
                entry.type = _SCALARS[kind]
            else:
                entry.type, entry.type_name = _F.TYPE_MESSAGE, f".{kind}"
        if _FIELD.sub("", body).strip():
            raise ValueError(f"{name}: unsupported syntax in message {message}")
    if _HEADER.sub("", _MESSAGE.sub("", text)).strip():
        raise ValueError(f"{name}: unsupported syntax outside messages")
    return proto


def _classes() -> dict[str, Any]:
    proto = parse(files("wattprobe.sinks.riemann").joinpath("riemann.proto").read_text())
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(proto.SerializeToString())
    return {
        m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(m.name))
        for m in proto.message_type
    }


_CLASSES = _classes()
Msg = _CLASSES["Msg"]
Event = _CLASSES["Event"]
Attribute = _CLASSES["Attribute"]
