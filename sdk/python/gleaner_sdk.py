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
                out.push(e.timestamp, e.body, e.fields)
                out.field(key, e.body.decode("utf-8", "replace").upper())
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
"""

import json

from componentize_py_types import Err
from wit_world.imports import host, kernels, types

__all__ = [
    "Batch",
    "Builder",
    "Event",
    "Flusher",
    "Processor",
    "Regex",
    "Reject",
    "Retry",
    "counter",
    "export_flusher",
    "export_processor",
    "json_extract",
    "log",
]


class Event:
    """One event: `timestamp` (ns since the epoch), `body` (bytes) and
    `fields` (a list of (name, value) pairs, values as str)."""

    __slots__ = ("timestamp", "body", "fields")

    def __init__(self, timestamp, body, fields):
        self.timestamp = timestamp
        self.body = body
        self.fields = fields

    def text(self):
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def field(self, name, default=None):
        """The value of field `name`, or `default`."""
        for k, v in self.fields:
            if k == name:
                return v
        return default


class Batch:
    """A batch from the host: iterate it for events; `tags` is a dict."""

    def __init__(self, raw):
        self._raw = raw
        self.tags = dict(raw.tags)

    def __len__(self):
        return len(self._raw.timestamps)

    def __iter__(self):
        raw = self._raw
        bodies, ends, ts = raw.bodies, raw.body_ends, raw.timestamps
        keys, values = raw.keys, raw.values
        fields = raw.fields
        nf = len(fields)
        f = 0
        start = 0
        for i, end in enumerate(ends):
            own = []
            # Fields come in event order.
            while f < nf and fields[f].event == i:
                fd = fields[f]
                own.append((keys[fd.key], values[fd.start : fd.start + fd.len].decode("utf-8", "replace")))
                f += 1
            yield Event(ts[i], bodies[start:end], own)
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
    """The batch a processor returns: `push` events, add `field`s."""

    def __init__(self, tags=()):
        self._tags = list(tags)
        self._timestamps = []
        self._bodies = bytearray()
        self._ends = []
        self._keys = []
        self._key_index = {}
        self._values = bytearray()
        self._fields = []

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
        """Adds an event (`body` as bytes or str) with (name, value) fields."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        self._timestamps.append(timestamp)
        self._bodies += body
        self._ends.append(len(self._bodies))
        for name, value in fields:
            self.field(name, value)

    def field(self, key, value):
        """Adds a field to the last event; `key` is a name or a `key()` index."""
        if not self._timestamps:
            return
        if isinstance(key, str):
            key = self.key(key)
        if isinstance(value, str):
            value = value.encode("utf-8")
        start = len(self._values)
        self._values += value
        self._fields.append(types.Field(len(self._timestamps) - 1, key, start, len(value)))

    def set_tag(self, name, value):
        """Adds or replaces a batch tag."""
        self._tags = [(k, v) for k, v in self._tags if k != name] + [(name, value)]

    def build(self):
        """The WIT batch (called for you when `process` returns a Builder)."""
        return types.Batch(
            self._tags,
            self._timestamps,
            bytes(self._bodies),
            self._ends,
            self._keys,
            bytes(self._values),
            self._fields,
        )


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
        value (a dict), and `default` (if not None) goes to the others."""
        # Keys are listed once per batch: reuse the input's index.
        if name in self._keys:
            k = self._keys.index(name)
        else:
            k = len(self._keys)
            self._keys.append(name)
        self._extra.append((k, values, default))

    def build(self):
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
        fields = raw.fields
        if self._extra:
            values = self._values
            Field = types.Field
            extra = []
            for k, given, default in self._extra:
                spans = {}
                for i, v in given.items():
                    v = v.encode("utf-8") if isinstance(v, str) else v
                    spans[i] = (len(values), len(v))
                    values += v
                if default is not None:
                    d = default.encode("utf-8") if isinstance(default, str) else default
                    dstart = len(values)
                    values += d
                    dspan = (dstart, len(d))
                    extra += [Field(i, k, *spans.get(i, dspan)) for i in range(n)]
                else:
                    extra += [Field(i, k, *spans[i]) for i in sorted(spans)]
            # Fields stay in event order (the host and the SDKs rely on it).
            if fields or len(self._extra) > 1:
                extra = sorted(list(fields) + extra, key=lambda f: f.event)
            fields = extra
            self._values = values
        return types.Batch(raw.tags, raw.timestamps, bodies, ends, self._keys, bytes(self._values), fields)


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
        """Every match as a span (`event`, `start`, `len`), by event."""
        return self._re.find_all(batch.bodies, batch.body_ends)

    def captures(self, batch):
        """For each event with a match, the groups of its first match
        (`event`, `group`, `start`, `len`), group 0 first."""
        return self._re.captures(batch.bodies, batch.body_ends)


def json_extract(batch, paths):
    """Members named by `paths` of each body that is a JSON object (`.`
    descends into nested objects), natively: a `JsonMembers` whose
    `fields` have `key` = index into `paths` and spans into `values`, and
    `invalid`, the events that are not JSON objects."""
    return kernels.json_extract(batch.bodies, batch.body_ends, list(paths))


class Processor:
    """Subclass it: `__init__(self, config)` and `process(self, batch)`,
    which returns a Builder (or a list of Events)."""

    def __init__(self, config):
        self.config = config

    def process(self, batch):
        raise NotImplementedError


class Flusher:
    """Subclass it: `__init__(self, config)` and `flush(self, batch)`."""

    def __init__(self, config):
        self.config = config

    def flush(self, batch):
        raise NotImplementedError


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


def counter(name, delta=1):
    """Adds to the plugin counter `name` (exported by the host)."""
    host.counter_add(name, delta)


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
                return out.build()
            if isinstance(out, types.Batch):
                return out
            b = Builder(input.tags)
            for e in out:
                b.push(e.timestamp, e.body, e.fields)
            return b.build()

    return WitWorld


def export_flusher(cls):
    """The `WitWorld` class componentize-py exports, running `cls`."""
    state = {}

    class WitWorld(_Exports):
        _state = state
        _cls = cls

        def flush(self, input):
            try:
                state["plugin"].flush(Batch(input))
            except Retry as e:
                raise Err(types.FlushError_Retryable(_message(e)))
            except Reject as e:
                raise Err(types.FlushError_Rejected(_message(e)))
            except Err:
                raise
            except Exception as e:
                raise Err(types.FlushError_Retryable(_message(e)))

    return WitWorld
