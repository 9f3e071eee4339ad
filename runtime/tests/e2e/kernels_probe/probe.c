/* Test fixture: every host kernel called through the C SDK; the results
 * become fields, as app.py does (see sdks.rs): also the JSON members'
 * types, the body's length as a typed int, the size of the body as the
 * host's zstd compresses it, and its SHA-256 (hex) from the host. */
#include "gleaner.h"

#include <stdio.h>
#include <string.h>

static gl_regex kv;
static const char *const paths[] = {"level", "http.status"};

bool gleaner_init(gl_str config, gl_error *err) {
    char why[256];
    if (!gl_regex_compile(&kv, "(?P<k>[a-z]+)=(?P<v>\\d+)", why, sizeof why))
        return gl_fail(err, "%s", why);
    return true;
}

/* Appends fmt's text to buf, comma-separated (cut at the buffer's end). */
static void add(char *buf, size_t cap, const char *fmt, gl_str a, gl_str b) {
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, fmt, n ? "," : "", (int)a.len, a.ptr, (int)b.len, b.ptr);
}

static bool field(gl_builder *out, const char *key, const char *value) {
    return !*value || gl_field(out, gl_key(out, gl_cstr(key)), gl_cstr(value));
}

bool gleaner_process(const gl_batch *in, gl_builder *out, gl_error *err) {
    gl_events matching = gl_regex_matching(&kv, in);
    gl_spans found = gl_regex_find_all(&kv, in);
    gl_captures caps = gl_regex_captures(&kv, in);
    gl_json_members j = gl_json_extract(in, paths, 2);
    const gl_str none = {(const uint8_t *)"", 0};
    gl_names names = gl_regex_group_names(&kv);
    size_t m = 0, s = 0, c = 0, f = 0, inv = 0, next_field = 0;
    bool ok = true;
    for (uint32_t i = 0; ok && i < gl_len(in); i++) {
        char fa[512] = "", ca[512] = "", js[512] = "", ty[64] = "", zs[32] = "";
        for (; s < found.len && found.ptr[s].event == i; s++)
            add(fa, sizeof fa, "%s%.*s%.*s", gl_column(in, found.ptr[s].start, found.ptr[s].len), none);
        for (; c < caps.len && caps.ptr[c].event == i; c++) {
            gl_str name = {names.ptr[caps.ptr[c].group].ptr, names.ptr[caps.ptr[c].group].len};
            add(ca, sizeof ca, "%s%.*s:%.*s", name.len ? name : gl_cstr("0"),
                gl_column(in, caps.ptr[c].start, caps.ptr[c].len));
        }
        for (; f < j.fields.len && j.fields.ptr[f].event == i; f++) {
            gl_str v = {j.values.ptr + j.fields.ptr[f].start, j.fields.ptr[f].len};
            add(js, sizeof js, "%s%.*s=%.*s", gl_cstr(paths[j.fields.ptr[f].key]), v);
            char t[4];
            snprintf(t, sizeof t, "%u", j.types.ptr[f]);
            add(ty, sizeof ty, "%s%.*s%.*s", gl_cstr(t), none);
        }
        gl_bytes z;
        char why[128];
        if (!gl_compress(GL_ZSTD, gl_body(in, i), &z, why, sizeof why))
            return gl_fail(err, "compress: %s", why);
        snprintf(zs, sizeof zs, "%zu", z.len);
        gl_bytes_free(&z);
        uint8_t digest[32];
        char hex[65];
        gl_sha256(gl_body(in, i), digest);
        for (int d = 0; d < 32; d++)
            snprintf(hex + 2 * d, 3, "%02x", digest[d]);
        bool matched = m < matching.len && matching.ptr[m] == i;
        bool invalid = inv < j.invalid.len && j.invalid.ptr[inv] == i;
        m += matched;
        inv += invalid;
        ok = gl_push(out, gl_timestamp(in, i), gl_body(in, i)) &&
             gl_copy_fields(out, in, i, &next_field) && field(out, "matching", matched ? "yes" : "") &&
             field(out, "find_all", fa) && field(out, "captures", ca) && field(out, "json", js) &&
             field(out, "invalid", invalid ? "yes" : "") && field(out, "types", ty) &&
             field(out, "zstd", zs) && field(out, "sha256", hex) &&
             gl_value_int(out, gl_key(out, gl_cstr("len")), (int64_t)gl_body(in, i).len);
    }
    gl_names_free(&names);
    gl_events_free(&matching);
    gl_spans_free(&found);
    gl_captures_free(&caps);
    gl_json_members_free(&j);
    return ok || gl_fail(err, "out of memory");
}
