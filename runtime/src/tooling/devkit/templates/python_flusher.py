"""{{name}}: a Gleaner flusher. It counts the events it is given in the
plugin counter `events`; replace `flush` with delivery to your
destination (grant it in the pipeline). Raise gl.Retry for a transient
failure, gl.Reject for a batch the destination refuses for good.

Build: `gleaner plugin build` (componentize-py). Test in the real runtime:
`gleaner plugin test plugin.wasm --input sample.log`.
"""

import gleaner_sdk as gl


class Plugin(gl.Flusher):
    def flush(self, batch):
        gl.counter_add("events", len(batch))
        gl.log("debug", f"{len(batch)} events")


WitWorld = gl.export_flusher(Plugin)
