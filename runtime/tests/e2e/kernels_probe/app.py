"""Test fixture: every host kernel called through the Python SDK; the
results become fields (see sdks.rs, kernels_from_c_and_python_...), as
probe.c does: also the JSON members' types, the body's length as a typed
int, the size of the body as the host's zstd compresses it, and its
SHA-256 (hex) from the host."""

import gleaner_sdk as gl

PATHS = ["level", "http.status"]


class Probe(gl.Processor):
    def __init__(self, config):
        self.kv = gl.Regex(r"(?P<k>[a-z]+)=(?P<v>\d+)")
        self.names = self.kv.group_names()

    def process(self, batch):
        bodies = batch.bodies
        text = lambda start, n: bodies[start : start + n].decode()
        found, caps, members, types = {}, {}, {}, {}
        for s in self.kv.find_all(batch):
            found.setdefault(s.event, []).append(text(s.start, s.len))
        for c in self.kv.captures(batch):
            caps.setdefault(c.event, []).append(f"{self.names[c.group] or c.group}:{text(c.start, c.len)}")
        j = gl.json_extract(batch, PATHS)
        for f in j.fields:
            members.setdefault(f.event, []).append(f"{PATHS[f.key]}={j.values[f.start : f.start + f.len].decode()}")
            types.setdefault(f.event, []).append(str(f.type))
        out = batch.rewrite()
        out.add_field("matching", {i: "yes" for i in self.kv.matching(batch)})
        out.add_field("find_all", {i: ",".join(v) for i, v in found.items()})
        out.add_field("captures", {i: ",".join(v) for i, v in caps.items()})
        out.add_field("json", {i: ",".join(v) for i, v in members.items()})
        out.add_field("invalid", {i: "yes" for i in j.invalid})
        out.add_field("types", {i: ",".join(v) for i, v in types.items()})
        n = len(batch)
        out.add_field("zstd", {i: str(len(gl.compress("zstd", batch.body(i)))) for i in range(n)})
        out.add_field("sha256", {i: gl.sha256(batch.body(i)).hex() for i in range(n)})
        out.add_field("len", {i: len(batch.body(i)) for i in range(n)})
        return out


WitWorld = gl.export_processor(Probe)
