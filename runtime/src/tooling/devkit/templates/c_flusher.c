/*
 * {{name}}: a Gleaner flusher. It counts the events it is given in the
 * plugin counter `events`; replace gleaner_flush with delivery to your
 * destination (grant it in the pipeline, e.g. `grants: { dirs: [...] }`).
 *
 * Build: `make` (or `gleaner plugin build`). Test in the real runtime:
 * `make test`.
 */
#include "gleaner.h"

bool gleaner_init(gl_str config, gl_error *err) { return true; }

bool gleaner_flush(const gl_batch *in, gl_flush_error *err) {
    gl_counter_add("events", gl_len(in));
    gl_log(GL_DEBUG, "%zu events", gl_len(in));
    return true;
}
