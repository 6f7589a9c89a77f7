"""One input line or document -> a Record or an InvalidRecord, for native and OpenAI Batch inputs.

The parser never interprets values: a ``_target_`` key or a ``${...}`` string in a record is data,
passed through as it came (records never go near OmegaConf or Hydra's instantiate).
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

from adam.io.records import InvalidRecord, Record, RecordFormat
from adam.io.sharding import shard_of_id
from adam.io.validation import check
from adam.protocol.openai import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    PARAMS,
    URLS,
    Kind,
    Refused,
    known_fields,
    messages_of,
    params_of,
    read_body,
    refuse_unsupported,
    thinking_of,
)

log = logging.getLogger(__name__)

__all__ = ["PARAMS", "URLS", "Kind", "RecordParser", "is_openai_request", "text_problem"]
_OPENAI_TOP = frozenset({"custom_id", "method", "url", "body"})
_ONE_TEXT = {COMPLETIONS: "prompt", EMBEDDINGS: "input"}  # a line is one answer: a list of these holds one
SNIPPET_CHARS = 200
MAX_DEPTH = 100  # nesting levels a record may have; far below what the JSON parser and writer can recurse into
_SURROGATE = re.compile("[\ud800-\udfff]")  # left by a \ud800 escape with no pair; UTF-8 cannot encode it
_ONE_OBJECT = " — each line must be one JSON object"
_JSON_TYPES = {list: "an array", str: "a string", bool: "true or false", int: "a number", float: "a number"}


class RecordParser:
    """Turns decoded input into records for one reader: tracks ids for duplicates and warns once per field."""

    def __init__(
        self,
        kind: Kind,
        *,
        id_field: str = "id",
        text_field: str | None = None,
        shard: tuple[int, int] = (0, 1),
        endpoint: str | None = None,
    ) -> None:
        self.kind = kind
        self.endpoint = endpoint  # a Batch API batch's: every OpenAI line must ask it (None: any url of the kind)
        self.shard, self.num_shards = shard  # job.shard, job.num_shards: JSON lines of other shards are skipped
        self.id_field = id_field
        self._text_name = "prompt" if kind == "generate" else "text"  # the schema's name for the text
        self.text_field = text_field or self._text_name
        self.format: RecordFormat = "native"  # of the first object seen; lines that are not JSON report in it
        self.other_shards = 0  # JSON lines skipped as another shard's (still records of the input)
        self._format_known = False
        self._first_line: dict[str, int] = {}  # str(id) -> line it was first seen on
        self._warned: set[str] = set()
        known = ["messages", *PARAMS, "chat_template_kwargs"] if kind == "generate" else []
        self._fields = {name: name for name in (*known, "metadata")}
        self._fields[self.id_field] = "id"
        self._fields[self.text_field] = self._text_name
        self._rename = {"id": self.id_field, self._text_name: self.text_field}

    # ------------------------------------------------------------------ entry points
    def from_json_line(self, line: int, raw: bytes) -> Record | InvalidRecord | None:
        """A JSONL line (without its line ending); None for a blank line."""
        text = self._decode(line, raw)
        if isinstance(text, InvalidRecord):
            return text
        if not text.strip():
            return None
        try:
            obj = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        except ValueError as err:  # JSONDecodeError, a NaN or 1e999, an integer too long to convert
            return self._invalid(line, None, _json_error(err, text), snippet=text)
        except RecursionError:
            msg = f"nested too deep for the JSON parser: flatten it to at most {MAX_DEPTH} levels"
            return self._invalid(line, None, msg, snippet=text)
        if not isinstance(obj, dict):
            kind = "null" if obj is None else _JSON_TYPES.get(type(obj), type(obj).__name__)
            return self._invalid(line, None, f"expected a JSON object, got {kind}", snippet=text)
        if self.num_shards > 1 and not self._in_shard(obj, line, text):
            self.other_shards += 1
            return None  # another shard's record: not validated here (shard_records agrees, by the same id)
        return self._object(line, obj, text)

    def from_row(self, line: int, row: dict[str, Any], *, number: int) -> Record | InvalidRecord:
        """A row of a table: errors name ``line``; without an id column, its id is ``number``."""
        try:
            text = json.dumps(row, ensure_ascii=False, allow_nan=False)
        except ValueError:  # NaN or infinity: JSON has neither, and results are written as JSON
            column = next((k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)), None)
            what = f"'{column}' is" if column is not None else "a value is"
            return self._invalid(line, None, f"{what} NaN or infinity, which is not a JSON value: leave it empty")
        return self._object(line, row, text, number=number)

    def from_text_line(self, line: int, raw: bytes) -> Record | InvalidRecord | None:
        """A line of a plain-text input: the whole line is the prompt (or text); its id is its line number."""
        text = self._decode(line, raw, id_=line)
        if isinstance(text, InvalidRecord):
            return text
        if not text.strip():
            return None
        if self.kind == "generate":
            return Record(line=line, id=line, prompt=text, chat=True)
        return Record(line=line, id=line, text=text)

    def from_document(self, index: int, relpath: str, data: bytes) -> Record | InvalidRecord:
        """One file of a directory input: the file's text, with its relative path as id."""
        text = self._decode(index, data, id_=relpath)
        if isinstance(text, InvalidRecord):
            return text
        text = text.removeprefix("\ufeff")
        if not text.strip():
            return self._invalid(index, relpath, "file is empty")
        return Record(line=index, id=relpath, text=text)

    def too_long(self, line: int, head: bytes, limit: int) -> InvalidRecord:
        """A line over the size limit, which the reader skipped without holding it."""
        msg = f"line is longer than {limit} bytes: a record must fit on one line of at most that size"
        return self._invalid(line, None, msg, snippet=head.decode("utf-8", "replace"))

    def crashed(self, line: int, err: Exception, raw: bytes, *, id_: str | None = None) -> InvalidRecord:
        """A record whose reading raised ``err``: reported as invalid, so the run goes on without it."""
        detail = f"{type(err).__name__}: {err}"[:SNIPPET_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")
        msg = f"cannot read this record ({detail}): fix or remove it; if it looks valid, please report an adam bug"
        snippet = None if id_ is not None else raw[: SNIPPET_CHARS * 4].decode("utf-8", "replace")
        return self._invalid(line, id_, msg, snippet=snippet)

    def undecodable(self, line: int, raw: bytes, *, id_: str | None = None) -> InvalidRecord | None:
        """The error for bytes that are not UTF-8 (None when they are), as a line of a text input gets it."""
        text = self._decode(line, raw, id_=id_)
        return text if isinstance(text, InvalidRecord) else None

    def _object(
        self, line: int, obj: dict[str, Any], text: str, *, number: int | None = None
    ) -> Record | InvalidRecord:
        """A decoded JSON object or table row, checked as one record; ``text`` is its JSON for snippets."""
        problem = _structure_problem(obj, text)
        if problem is not None:
            return self._invalid(line, None, problem, snippet=text)
        if is_openai_request(obj):
            return self._openai(line, obj, text)
        return self._native(line, obj, text, number=line if number is None else number)

    def _raw_id(self, obj: Mapping[str, Any], number: int) -> str | int | None:
        """The id a record of ``obj`` has, valid or not (None where it has no usable one), before validation."""
        if is_openai_request(obj):
            return _custom_id(obj)
        value = obj.get(self.id_field, number)
        return value if _is_id(value) else None

    def _in_shard(self, obj: dict[str, Any], line: int, text: str) -> bool:
        """Whether this parser's shard may take a JSON line's record, from its raw id, as sharding.shard_of will.

        Only a record whose error (if any) will name that same id is decided here; one without a usable id,
        or with a structure problem (its error names no id), is kept for shard_records to place by its line.
        """
        key = self._raw_id(obj, line)
        if key is None or _structure_problem(obj, text) is not None:
            return True
        return shard_of_id(key, self.num_shards) == self.shard

    # ------------------------------------------------------------------ native records
    def _native(self, line: int, obj: dict[str, Any], raw: str, *, number: int) -> Record | InvalidRecord:
        self._note_format("native")
        view: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in obj.items():
            canon = self._fields.get(key)
            if canon is None:
                extra[key] = value
            else:
                view[canon] = value
        own_id = "id" in view
        id_ = view.get("id", number)
        if not _is_id(id_):
            msg = f"'{self.id_field}' must be a non-empty string or an integer, got {json.dumps(id_)[:60]}"
            return self._invalid(line, None, msg, snippet=raw)
        snippet = None if own_id else raw
        message = check(self.kind, view, rename=self._rename)
        if message is not None:
            self._remember(id_, line)
            return self._invalid(line, id_, message + self._hint(view, obj), snippet=snippet)
        if (dup := self._duplicate(id_, line)) is not None:
            return self._invalid(line, id_, dup, snippet=snippet)
        params: dict[str, Any] = {}
        if self.kind == "generate":  # what a chat request cannot ask at any door (tools): refused in the same words
            try:
                refuse_unsupported(obj, known_fields(CHAT))
                params = params_of(view)  # read as an OpenAI body's fields are (a malformed schema refused alike)
            except Refused as err:
                return self._invalid(line, id_, err.message, snippet=snippet, param=err.param, code=err.code)
        for key in extra:
            self._warn_misspelt(key)
        common: dict[str, Any] = {"line": line, "id": id_, "metadata": view.get("metadata"), "extra": extra}
        if self.kind == "embed":
            return Record(text=view["text"], **common)
        thinking = thinking_of(view)
        if "messages" in view:
            return Record(messages=messages_of(view["messages"]), params=params, thinking=thinking, **common)
        return Record(prompt=view["prompt"], chat=True, params=params, thinking=thinking, **common)

    def _hint(self, view: Mapping[str, Any], obj: Mapping[str, Any]) -> str:
        """Point at job.text_field when the text sits under the other usual name."""
        if self._text_name in view or "messages" in view:
            return ""
        other = "text" if self.kind == "generate" else "prompt"
        if other in obj and other != self.text_field:
            return f"; this record has '{other}': set job.text_field={other}"
        return ""

    # ------------------------------------------------------------------ OpenAI batch requests
    def _openai(self, line: int, obj: dict[str, Any], raw: str) -> Record | InvalidRecord:
        """An OpenAI batch line; a line whose body alone is wrong comes back ``in_body`` (the request's own 400).

        The body is read by adam.protocol.openai, as its HTTP route reads it: the same fields, the same refusals.
        """
        self._note_format("openai")
        id_ = _custom_id(obj)
        snippet = None if id_ is not None else raw
        url = obj.get("url")
        message = self._url_problem(url) or check("openai_request", obj)
        if message is not None:
            if id_ is not None:
                self._remember(id_, line)
            return self._invalid(line, id_, message, snippet=snippet, fmt="openai")
        assert id_ is not None  # the schema requires a non-empty custom_id
        if (dup := self._duplicate(id_, line)) is not None:
            return self._invalid(line, id_, dup, fmt="openai")
        body: dict[str, Any] = obj["body"]
        try:
            ask = read_body(url, body)
            if len(ask.texts) > 1:
                name = _ONE_TEXT[url]
                raise Refused(f"one {name} per line: split the list into lines", param=name)
        except Refused as err:
            return self._invalid(line, id_, err.message, fmt="openai", in_body=True, param=err.param, code=err.code)
        for key in obj.keys() - _OPENAI_TOP:
            self._warn_once(f"top:{key}", "field %r of an OpenAI batch line is ignored", key)
        for key in body.keys() - known_fields(url):
            self._warn_once(f"body:{key}", "body key %r is not supported by adam and is ignored", key)
        if ask.model is not None and self.endpoint is None and self._once("model"):
            log.info("request bodies name model %r; adam answers with its configured model", ask.model)
        common: dict[str, Any] = {"line": line, "id": id_, "format": "openai", "url": url, "model": ask.model}
        if url == EMBEDDINGS:
            return Record(text=ask.texts[0], **common)
        if url == COMPLETIONS:
            return Record(prompt=ask.texts[0], chat=False, params=ask.params, **common)
        return Record(messages=ask.messages, params=ask.params, thinking=ask.thinking, **common)

    def _url_problem(self, url: Any) -> str | None:
        """Why an OpenAI line's url is not one this parser takes (a url that is not a string is the schema's)."""
        if not isinstance(url, str):
            return None
        if self.endpoint is not None:
            if url == self.endpoint:
                return None
            return f"url {url!r} is not the batch's endpoint {self.endpoint!r}: every line of a batch asks its endpoint"
        if url in URLS[self.kind]:
            return None
        message = f"url {url!r} is not supported by a {self.kind} job: use {' or '.join(URLS[self.kind])}"
        other = next((k for k, urls in URLS.items() if url in urls), None)
        return message + (f" (or run job={other})" if other is not None else "")

    # ------------------------------------------------------------------ shared helpers
    def _decode(self, line: int, raw: bytes, id_: str | int | None = None) -> str | InvalidRecord:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            msg = f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start}): save the input as UTF-8"
            return self._invalid(line, id_, msg, snippet=raw.decode("utf-8", "replace"))

    def _invalid(
        self,
        line: int,
        id_: str | int | None,
        message: str,
        *,
        snippet: str | None = None,
        fmt: RecordFormat | None = None,
        in_body: bool = False,
        param: str | None = None,
        code: str = "invalid_request",
    ) -> InvalidRecord:
        clipped = snippet[:SNIPPET_CHARS] if snippet is not None else None
        return InvalidRecord(line, id_, message, fmt or self.format, clipped, in_body, param, code)

    def _note_format(self, fmt: RecordFormat) -> None:
        if not self._format_known:
            self.format, self._format_known = fmt, True

    def _remember(self, id_: str | int, line: int) -> None:
        self._first_line.setdefault(str(id_), line)

    def _duplicate(self, id_: str | int, line: int) -> str | None:
        """A message if ``id_`` was seen before; 1 and "1" count as the same id (Parquet stores ids as text)."""
        first = self._first_line.setdefault(str(id_), line)
        return None if first == line else f"duplicate id {id_!r} (first seen on line {first})"

    def _warn_misspelt(self, name: str) -> None:
        if not self._once(f"field:{name}"):  # each name is looked at once per reader
            return
        close = difflib.get_close_matches(name, list(self._fields), n=1, cutoff=0.8)
        if close:
            log.warning("unknown field %r (did you mean %r?) is passed through, not used", name, close[0])

    def _warn_once(self, key: str, fmt: str, *args: Any) -> None:
        if self._once(key):
            log.warning(fmt, *args)

    def _once(self, key: str) -> bool:
        if key in self._warned:
            return False
        self._warned.add(key)
        return True


def is_openai_request(obj: Mapping[str, Any]) -> bool:
    """Whether a JSON object is an OpenAI Batch request line (has custom_id, or a body with url/method)."""
    return "custom_id" in obj or ("body" in obj and ("url" in obj or "method" in obj))


class _NotJson(ValueError):
    """A value json.loads would otherwise accept that adam cannot write back: NaN, Infinity, 1e999."""


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"not valid JSON: {name} is not a JSON value (use a number or null){_ONE_OBJECT}")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _NotJson(f"the number {literal[:40]} is out of range (it reads as infinity): write a smaller one")
    return value


def _json_error(err: ValueError, text: str) -> str:
    """One line saying why ``text`` cannot be read as JSON, and what to do."""
    if isinstance(err, json.JSONDecodeError):
        if err.msg.startswith("Invalid control character") and err.pos < len(text):
            char = f"U+{ord(text[err.pos]):04X}"
            return f"not valid JSON: a raw control character ({char}) at column {err.colno}: write it as \\u{char[2:]}"
        return f"not valid JSON: {err.msg} at column {err.colno}{_ONE_OBJECT}"
    if isinstance(err, _NotJson):
        return str(err)
    if "digits" in str(err):  # int() refuses longer integer literals (sys.set_int_max_str_digits)
        limit = sys.get_int_max_str_digits()
        return f"an integer has more than {limit} digits, more than Python reads: write it as a string"
    return f"not valid JSON: {err}{_ONE_OBJECT}"


def text_problem(obj: Any) -> str | None:
    """Why decoded JSON ``obj`` cannot be written back as UTF-8: a string or key with a lone surrogate; None if it can.

    The one check every door uses (input lines here, request bodies in the server): what passes is never
    stored, echoed or streamed only to fail when it is encoded.
    """
    return _walk(obj, deep=False, surrogate=True)


def _structure_problem(obj: dict[str, Any], text: str) -> str | None:
    """Why a parsed record cannot be written back as JSON Lines: nested too deep, or a lone surrogate.

    Both are rare, so the raw text is screened first and the walk runs only when the screen hits.
    """
    deep = text.count("[") + text.count("{") > MAX_DEPTH  # brackets in strings count too: an upper bound
    surrogate = "\\ud" in text or "\\uD" in text  # a surrogate can only come from a \u escape
    if not (deep or surrogate):
        return None
    return _walk(obj, deep=deep, surrogate=surrogate)


def _walk(obj: Any, *, deep: bool, surrogate: bool) -> str | None:
    """The first problem in ``obj``: a lone surrogate in a string or key (if ``surrogate``), nesting (if ``deep``)."""
    stack: list[tuple[Any, str, int]] = [(obj, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if surrogate and (code := _lone_surrogate(value)):
                where = f"'{path}'" if path else "the value"
                return f"{where} holds a lone UTF-16 surrogate ({code}), which is not text: remove it or fix its pair"
            continue
        if not isinstance(value, (dict, list)):
            continue
        if deep and depth > MAX_DEPTH:
            field = re.split(r"[.\[]", path, maxsplit=1)[0]  # the record's own field: the full path is 100 levels long
            return f"'{field}' is nested deeper than {MAX_DEPTH} levels: flatten it (or store it as a JSON string)"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            if isinstance(key, str) and surrogate and (code := _lone_surrogate(key)):
                where = f" in '{path}'" if path else ""
                return f"a key{where} holds a lone UTF-16 surrogate ({code}), which is not text: rename it"
            sub = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))
            stack.append((child, sub, depth + 1))
    return None


def _lone_surrogate(value: str) -> str | None:
    """The first unpaired surrogate in ``value`` as its escape (\\ud800), or None."""
    found = _SURROGATE.search(value)
    return None if found is None else f"\\u{ord(found.group()):04x}"


def _custom_id(obj: Mapping[str, Any]) -> str | None:
    """An OpenAI batch line's custom_id, where it is one (a non-empty string)."""
    cid = obj.get("custom_id")
    return cid if isinstance(cid, str) and cid else None


def _is_id(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, int) and not isinstance(value, bool)
