"""Gleaner plugin SDK for Python, on componentize-py.

A Pythonic view of the batches the host sends (events with `body`,
`timestamp` and `fields`), a builder for the batch you return, host
logging and counters, and one call that turns your class into the
component's exports:

    import gleaner_sdk as gl

    class Upper(gl.Processor):
        def __init__(self, config):          # the pipeline's `config:` as a dict
            self.field = config.get("field", "upper")

        def process(self, batch):            # a gl.Batch
            out = batch.builder()            # tags pass through
            key = out.key(self.field)
            for e in batch:
                out.push_copy(e)             # time, severity, typed fields
                out.field(key, e.text().upper())
            return out

    WitWorld = gl.export_processor(Upper)

For speed, let the host do the scanning: `Regex(pattern).matching(batch)`
(also `find_all`, `captures`) and `json_extract(batch, paths)` run natively
over every body in one call, and `batch.rewrite()` passes the batch on with
only the bodies you `set_body` changed (docs/plugins.md, Host kernels).

Build with `gleaner plugin build` (or `componentize-py -d wit -w processor
componentize app -p . -o plugin.wasm`). Raising an exception in
`__init__` refuses the config; in `process` it fails the batch (the
host applies the pipeline's `on_error` policy). A flusher subclasses
`gl.Flusher`, implements `flush(batch)` and raises `gl.Retry` or
`gl.Reject`; export it with `gl.export_flusher`.

Values are typed (gleaner:plugin@0.3.0): `e.fields` gives every value as
text, as plugins built for 0.2.0 saw them; `e.values` and `e.value(name)`
give Python values (str, int, float, bool, None, or a list/dict for JSON);
`out.value(key, v)` sets one typed, `out.field(key, text)` sets text, and
either replaces a field the event already has. `e.severity` and
`out.set_severity(n)` are OpenTelemetry's severity numbers (0 = unset).
"""

import json

from componentize_py_types import Err
from wit_world.imports import host, kernels, types

# The type tags of `field-types` (wit/plugin.wit).
STRING, INT, FLOAT, BOOL, NULL, JSON = range(6)

__all__ = [
    "Batch",
    "Builder",
    "Capture",
    "Event",
    "JsonMembers",
    "Member",
    "Flusher",
    "Processor",
    "Regex",
    "Reject",
    "Report",
    "Retry",
    "Span",
    "compress",
    "counter_add",
    "export_flusher",
    "export_processor",
    "json_extract",
    "log",
]


class Event:
    """One event: `timestamp` (ns since the epoch), `severity`
    (OpenTelemetry's number, 0 = unset), `body` (bytes) and `fields` (a
    list of (name, text) pairs: a typed value as its text, `"200"`)."""

    __slots__ = ("timestamp", "body", "fields", "severity", "_types")

    def __init__(self, timestamp, body, fields, severity=0, types=None):
        self.timestamp = timestamp
        self.body = body
        self.fields = fields
        self.severity = severity
        self._types = types

    def text(self):
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def field(self, name, default=None):
        """The text of field `name`, or `default`."""
        for k, v in reversed(self.fields):
            if k == name:
                return v
        return default

    @property
    def values(self):
        """The fields as (name, Python value) pairs."""
        types = self._types or [STRING] * len(self.fields)
        return [(k, _decode(t, v)) for (k, v), t in zip(self.fields, types)]

    def value(self, name, default=None):
        """The typed value of field `name`, or `default`."""
        for k, v in reversed(self.values):
            if k == name:
                return v
        return default


def _decode(ty, text):
    """A field's Python value from its type tag and text."""
    try:
        if ty == INT:
            return int(text)
        if ty == FLOAT:
            return float(text)
        if ty == BOOL:
            return text == "true"
        if ty == NULL:
            return None
        if ty == JSON:
            return json.loads(text)
    except ValueError:
        pass
    return text


def _encode(value):
    """(type tag, text bytes) of a Python value."""
    if isinstance(value, bool):
        return BOOL, b"true" if value else b"false"
    if isinstance(value, int):
        return INT, str(value).encode()
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return NULL, b"null"
        return FLOAT, repr(value).encode()
    if value is None:
        return NULL, b"null"
    if isinstance(value, (list, dict)):
        return JSON, json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    if isinstance(value, (bytes, bytearray)):
        return STRING, bytes(value)
    return STRING, str(value).encode("utf-8")


class Batch:
    """A batch from the host: iterate it for events; `tags` is a dict."""

    def __init__(self, raw):
        self._raw = raw
        self.tags = dict(raw.tags)

    def __len__(self):
        return len(self._raw.timestamps)

    def __iter__(self):
        raw = self._raw
        bodies, ends, ts, sev = raw.bodies, raw.body_ends, raw.timestamps, raw.severities
        keys, values = raw.keys, raw.values
        fields, ftypes = raw.fields, raw.field_types
        nf = len(ftypes)
        f = 0
        start = 0
        for i, end in enumerate(ends):
            own = []
            types = []
            # Fields come in event order, four numbers each.
            while f < nf and fields[4 * f] == i:
                k, at, n = fields[4 * f + 1], fields[4 * f + 2], fields[4 * f + 3]
                own.append((keys[k], values[at : at + n].decode("utf-8", "replace")))
                types.append(ftypes[f])
                f += 1
            yield Event(ts[i], bodies[start:end], own, sev[i] if i < len(sev) else 0, types)
            start = end

    def builder(self):
        """An empty output batch with this batch's tags."""
        return Builder(self._raw.tags)

    @property
    def bodies(self):
        """All bodies concatenated (bytes): the column the kernels take."""
        return self._raw.bodies

    @property
    def body_ends(self):
        """Each event's end offset in `bodies`."""
        return self._raw.body_ends

    def body(self, i):
        """Event i's body, without building the other events."""
        ends = self._raw.body_ends
        return self._raw.bodies[ends[i - 1] if i else 0 : ends[i]]

    def rewrite(self):
        """An output batch that starts as this batch, every event kept:
        change a few bodies and add fields in bulk, without a Python step
        per unchanged event (see `Rewrite`)."""
        return Rewrite(self._raw)


class Builder:
    """The batch a processor returns: `push` events, set `field`s and
    `value`s; `finish` makes the batch (called for you when `process`
    returns a Builder)."""

    def __init__(self, tags=()):
        self._tags = list(tags)
        self._timestamps = []
        self._severities = bytearray()
        self._bodies = bytearray()
        self._ends = []
        self._keys = []
        self._key_index = {}
        self._values = bytearray()
        self._fields = []
        self._types = bytearray()
        self._last = 0  # the first field of the last event

    def __len__(self):
        return len(self._timestamps)

    def key(self, name):
        """The index of field name `name` (intern it once, reuse it)."""
        k = self._key_index.get(name)
        if k is None:
            k = len(self._keys)
            self._keys.append(name)
            self._key_index[name] = k
        return k

    def push(self, timestamp, body, fields=()):
        """Adds an event (`body` as bytes or str) with (name, text) fields."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        self._timestamps.append(timestamp)
        self._severities.append(0)
        self._bodies += body
        self._ends.append(len(self._bodies))
        self._last = len(self._types)
        for name, value in fields:
            self.field(name, value)

    def push_copy(self, event):
        """Adds a copy of `event`: time, severity, body and typed fields."""
        self.push(event.timestamp, event.body)
        self.set_severity(event.severity)
        types = event._types or [STRING] * len(event.fields)
        for (name, text), ty in zip(event.fields, types):
            self._set(self.key(name), ty, text.encode("utf-8"))

    def _set(self, key, ty, data):
        if not self._timestamps:
            return
        start = len(self._values)
        self._values += data
        fields = self._fields
        for i in range(self._last, len(self._types)):
            if fields[4 * i + 1] == key:
                fields[4 * i + 2] = start
                fields[4 * i + 3] = len(data)
                self._types[i] = ty
                return
        fields += (len(self._timestamps) - 1, key, start, len(data))
        self._types.append(ty)

    def field(self, key, value):
        """Sets a text field of the last event (replacing its value if it
        has one); `key` is a name or a `key()` index."""
        if isinstance(key, str):
            key = self.key(key)
        if isinstance(value, str):
            value = value.encode("utf-8")
        elif not isinstance(value, (bytes, bytearray)):
            value = str(value).encode("utf-8")
        self._set(key, STRING, bytes(value))

    def value(self, key, value):
        """Sets a typed field of the last event: an int, float, bool, None,
        list or dict keeps its type (a str is text)."""
        if isinstance(key, str):
            key = self.key(key)
        ty, data = _encode(value)
        self._set(key, ty, data)

    def set_severity(self, n):
        """Sets the last event's severity (1-24, OpenTelemetry's numbers)."""
        if self._timestamps:
            self._severities[-1] = max(0, min(int(n), 24))

    def set_tag(self, name, value):
        """Adds or replaces a batch tag."""
        self._tags = [(k, v) for k, v in self._tags if k != name] + [(name, value)]

    def finish(self):
        """The WIT batch."""
        return types.Batch(
            self._tags,
            self._timestamps,
            bytes(self._severities),
            bytes(self._bodies),
            self._ends,
            self._keys,
            bytes(self._values),
            self._fields,
            bytes(self._types),
        )

    # The name before 0.3.0.
    build = finish


class Rewrite:
    """The output of `Batch.rewrite()`: the input's events, tags and fields,
    with `set_body` for the events that change and `add_field` for a field
    on every event. Return it from `process`."""

    def __init__(self, raw):
        self._raw = raw
        self._bodies = {}
        self._keys = list(raw.keys)
        self._values = bytearray(raw.values)
        self._extra = []

    def set_body(self, i, body):
        """Replaces event i's body (bytes or str)."""
        self._bodies[i] = body.encode("utf-8") if isinstance(body, str) else body

    def add_field(self, name, values, default=None):
        """Adds field `name` to events: `values` maps an event index to its
        value (a dict), and `default` (if not None) goes to the others. A
        str or bytes value is text; an int, float, bool, list or dict keeps
        its type."""
        # Keys are listed once per batch: reuse the input's index.
        if name in self._keys:
            k = self._keys.index(name)
        else:
            k = len(self._keys)
            self._keys.append(name)
        self._extra.append((k, values, default))

    def finish(self):
        """The WIT batch (called for you when `process` returns it)."""
        raw = self._raw
        n = len(raw.timestamps)
        bodies, ends = raw.bodies, raw.body_ends
        if self._bodies:
            pieces = []
            new_ends = []
            at = 0
            delta = 0
            for i in sorted(self._bodies):
                start = ends[i - 1] if i else 0
                pieces.append(bodies[at:start])
                new_ends.extend([e + delta for e in ends[len(new_ends) : i]])
                body = self._bodies[i]
                pieces.append(body)
                delta += len(body) - (ends[i] - start)
                new_ends.append(ends[i] + delta)
                at = ends[i]
            pieces.append(bodies[at:])
            new_ends.extend([e + delta for e in ends[len(new_ends) :]])
            bodies, ends = b"".join(pieces), new_ends
        fields, ftypes = raw.fields, raw.field_types
        if self._extra:
            values = self._values
            extra = []
            for k, given, default in self._extra:
                spans = {}
                for i, v in given.items():
                    ty, v = _encode(v)
                    spans[i] = (len(values), len(v), ty)
                    values += v
                if default is not None:
                    ty, d = _encode(default)
                    dstart = len(values)
                    values += d
                    dspan = (dstart, len(d), ty)
                    extra += [(i, k, *spans.get(i, dspan)) for i in range(n)]
                else:
                    extra += [(i, k, *spans[i]) for i in sorted(spans)]
            # Fields stay in event order (the host and the SDKs rely on it).
            old = [(*fields[4 * f : 4 * f + 4], ftypes[f]) for f in range(len(ftypes))]
            merged = sorted(old + extra, key=lambda f: f[0]) if old or len(self._extra) > 1 else extra
            fields = [x for f in merged for x in f[:4]]
            ftypes = bytes(f[4] for f in merged)
            self._values = values
        return types.Batch(
            raw.tags,
            raw.timestamps,
            raw.severities,
            bodies,
            ends,
            self._keys,
            bytes(self._values),
            fields,
            ftypes,
        )

    # The name before 0.3.0.
    build = finish


class Regex:
    """A regex compiled and run natively by the host (Rust `regex` syntax:
    linear time, no look-around), over every body of a batch in one call.
    Compile it once, in `__init__`. Offsets index `batch.bodies`."""

    def __init__(self, pattern):
        try:
            self._re = kernels.Regex.compile(pattern)
        except Err as e:
            raise ValueError(f"invalid regex {pattern!r}: {e.value}") from None

    def group_names(self):
        """Capture group names, group 0 first; "" for unnamed groups."""
        return self._re.group_names()

    def matching(self, batch):
        """Indices of the events whose body has a match, ascending."""
        return self._re.matching(batch.bodies, batch.body_ends)

    def find_all(self, batch):
        """Every match as a `Span` (`event`, `start`, `len`), by event."""
        flat = self._re.find_all(batch.bodies, batch.body_ends)
        return [Span(*flat[i : i + 3]) for i in range(0, len(flat), 3)]

    def captures(self, batch):
        """For each event with a match, the groups of its first match as
        `Capture`s (`event`, `group`, `start`, `len`), group 0 first."""
        flat = self._re.captures(batch.bodies, batch.body_ends)
        return [Capture(*flat[i : i + 4]) for i in range(0, len(flat), 4)]


class Span(tuple):
    """A match: `batch.bodies[start : start + len]` of event `event`."""

    __slots__ = ()
    event = property(lambda s: s[0])
    start = property(lambda s: s[1])
    len = property(lambda s: s[2])

    def __new__(cls, event, start, len):
        return tuple.__new__(cls, (event, start, len))


class Capture(tuple):
    """Group `group` (0: the whole match) of event `event`'s first match."""

    __slots__ = ()
    event = property(lambda s: s[0])
    group = property(lambda s: s[1])
    start = property(lambda s: s[2])
    len = property(lambda s: s[3])

    def __new__(cls, event, group, start, len):
        return tuple.__new__(cls, (event, group, start, len))


class Member(tuple):
    """A JSON member: event, key (index into the paths), start and len
    into `JsonMembers.values`, and its type tag."""

    __slots__ = ()
    event = property(lambda s: s[0])
    key = property(lambda s: s[1])
    start = property(lambda s: s[2])
    len = property(lambda s: s[3])
    type = property(lambda s: s[4])

    def __new__(cls, event, key, start, len, type):
        return tuple.__new__(cls, (event, key, start, len, type))


class JsonMembers:
    """What `json_extract` found: `fields` (Members), `values` (bytes) and
    `invalid` (events whose body is not a JSON object)."""

    def __init__(self, raw):
        f, t = raw.fields, raw.types
        self.values = raw.values
        self.fields = [Member(*f[4 * i : 4 * i + 4], t[i]) for i in range(len(t))]
        self.invalid = raw.invalid


def json_extract(batch, paths):
    """Members named by `paths` of each body that is a JSON object (`.`
    descends into nested objects), natively: a `JsonMembers` whose
    `fields` have `key` = index into `paths` and spans into `values`, and
    `invalid`, the events that are not JSON objects."""
    return JsonMembers(kernels.json_extract(batch.bodies, batch.body_ends, list(paths)))


class Processor:
    """Subclass it: `__init__(self, config)` and `process(self, batch)`,
    which returns a Builder (or a list of Events)."""

    def __init__(self, config):
        self.config = config

    def process(self, batch):
        raise NotImplementedError


class Flusher:
    """Subclass it: `__init__(self, config)` and `flush(self, batch)`,
    which returns nothing (all delivered) or a `Report`."""

    def __init__(self, config):
        self.config = config

    def flush(self, batch):
        raise NotImplementedError


class Report:
    """What a flusher's `flush` may return for a destination that answers
    item by item: `retry(i)` for an event to send again, `reject(i,
    reason)` for one refused for good; the others were delivered."""

    def __init__(self):
        self._retry = set()
        self._rejected = {}

    def retry(self, i):
        self._retry.add(int(i))
        return self

    def reject(self, i, reason):
        self._rejected[int(i)] = str(reason)
        return self

    def _wit(self):
        rejected = sorted(self._rejected)
        return types.FlushReport(
            sorted(self._retry - set(rejected)), rejected, [self._rejected[i] for i in rejected]
        )


class Retry(Exception):
    """Raised by a flusher: a transient failure, retried with backoff."""


class Reject(Exception):
    """Raised by a flusher: the destination refused the batch for good."""


_LEVELS = {
    "trace": types.Level.TRACE,
    "debug": types.Level.DEBUG,
    "info": types.Level.INFO,
    "warn": types.Level.WARN,
    "error": types.Level.ERROR,
}


def log(level, message):
    """Writes to the host's log (`level`: trace, debug, info, warn, error)."""
    host.log(_LEVELS[level], message)


def counter_add(name, delta=1):
    """Adds to the plugin counter `name` (exported by the host)."""
    host.counter_add(name, delta)


# The name before 0.3.0.
counter = counter_add

_CODECS = {
    "zstd": types.Codec.ZSTD,
    "lz4": types.Codec.LZ4,
    "gzip": types.Codec.GZIP,
    "snappy": types.Codec.SNAPPY,
}


def sha256(data):
    """The SHA-256 of `data` (bytes), computed natively by the host."""
    return bytes(host.hash(types.HashAlgorithm.SHA256, bytes(data)))


def compress(codec, data):
    """`data` compressed natively by the host (`codec`: zstd, lz4, gzip, snappy)."""
    try:
        return host.compress(_CODECS[codec], bytes(data))
    except Err as e:
        raise ValueError(f"compress: {e.value}") from None


def _config(text):
    value = json.loads(text) if text else {}
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError("the config must be a mapping")
    return value


def _message(e):
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class _Exports:
    """`init`, shared by both worlds: builds the plugin from its config
    (kept per class, since componentize-py may make a new exports object
    per call)."""

    _state = {}
    _cls = None

    def init(self, config):
        try:
            self._state["plugin"] = self._cls(_config(config))
        except Exception as e:
            raise Err(_message(e))


def export_processor(cls):
    """The `WitWorld` class componentize-py exports, running `cls`."""
    state = {}

    class WitWorld(_Exports):
        _state = state
        _cls = cls

        def process(self, input):
            try:
                out = state["plugin"].process(Batch(input))
            except Err:
                raise
            except Exception as e:
                raise Err(_message(e))
            if isinstance(out, (Builder, Rewrite)):
                return out.finish()
            if isinstance(out, types.Batch):
                return out
            b = Builder(input.tags)
            for e in out:
                b.push_copy(e)
            return b.finish()

    return WitWorld


def export_flusher(cls):
    """The `WitWorld` class componentize-py exports, running `cls`."""
    state = {}

    class WitWorld(_Exports):
        _state = state
        _cls = cls

        def flush(self, input):
            try:
                out = state["plugin"].flush(Batch(input))
                return (out if isinstance(out, Report) else Report())._wit()
            except Retry as e:
                raise Err(types.FlushError_Retryable(_message(e)))
            except Reject as e:
                raise Err(types.FlushError_Rejected(_message(e)))
            except Err:
                raise
            except Exception as e:
                raise Err(types.FlushError_Retryable(_message(e)))

    return WitWorld
