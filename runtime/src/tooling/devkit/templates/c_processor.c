/*
 * {{name}}: a Gleaner processor. It adds the field `greeting` (config key
 * `greeting`, default `hello`) to every event and keeps everything else.
 *
 * Build: `make` (or `gleaner plugin build`). Test in the real runtime:
 * `make test`.
 */
#include "gleaner.h"

static char greeting[256] = "hello";

bool gleaner_init(gl_str config, gl_error *err) {
    if (gl_config_string(config, "greeting", greeting, sizeof greeting) < 0)
        return gl_fail(err, "greeting: must be a string of at most 255 bytes");
    return true;
}

bool gleaner_process(const gl_batch *in, gl_builder *out, gl_error *err) {
    uint32_t key = gl_key(out, gl_cstr("greeting"));
    size_t next = 0;
    for (size_t i = 0; i < gl_len(in); i++) {
        /* The event as it came (time, severity, typed fields), then the
         * greeting (replacing one it had). */
        if (!gl_push_copy(out, in, i, &next) || !gl_field(out, key, gl_cstr(greeting)))
            return gl_fail(err, "out of memory");
    }
    return true;
}
