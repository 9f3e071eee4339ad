"""{{name}}: a Gleaner processor. It adds the field `greeting` (config key
`greeting`, default `hello`) to every event and keeps everything else.

Build: `gleaner plugin build` (componentize-py). Test in the real runtime:
`gleaner plugin test plugin.wasm --input sample.log --expect expected.ndjson`.
"""

import gleaner_sdk as gl


class Plugin(gl.Processor):
    def __init__(self, config):
        self.greeting = config.get("greeting", "hello")
        if not isinstance(self.greeting, str):
            raise ValueError("greeting: must be a string")

    def process(self, batch):
        out = batch.builder()
        key = out.key("greeting")
        for e in batch:
            out.push_copy(e)  # time, severity, typed fields
            out.field(key, self.greeting)  # replaces a greeting it had
        return out


WitWorld = gl.export_processor(Plugin)
