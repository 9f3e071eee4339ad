/*
 * Gleaner plugin SDK for C: batch accessors, the output builder, host
 * calls, a small config reader, and the exports wit-bindgen expects
 * (they call the plugin's gleaner_init / gleaner_process / gleaner_flush).
 * Compile it with -DGLEANER_PROCESSOR or -DGLEANER_FLUSHER, like the plugin.
 */
#include "gleaner.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef GL_W(string_t) gl_wstring;
typedef GL_W(tuple2_string_string_t) gl_wtag;

gl_str gl_cstr(const char *s) {
    gl_str v = {(const uint8_t *)s, strlen(s)};
    return v;
}

bool gl_eq(gl_str a, gl_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static gl_str view(const gl_wstring *s) {
    gl_str v = {s->ptr, s->len};
    return v;
}

/* --- Reading -------------------------------------------------------- */

size_t gl_len(const gl_batch *b) { return b->timestamps.len; }

gl_str gl_body(const gl_batch *b, size_t i) {
    uint32_t start = i == 0 ? 0 : b->body_ends.ptr[i - 1];
    gl_str v = {b->bodies.ptr + start, b->body_ends.ptr[i] - start};
    return v;
}

int64_t gl_timestamp(const gl_batch *b, size_t i) { return b->timestamps.ptr[i]; }

uint8_t gl_severity(const gl_batch *b, size_t i) {
    return i < b->severities.len ? b->severities.ptr[i] : 0;
}

/* Fields are four u32 each: event, key, start, len. */
size_t gl_field_count(const gl_batch *b) { return b->field_types.len; }

uint32_t gl_field_event(const gl_batch *b, size_t f) { return b->fields.ptr[4 * f]; }

gl_str gl_field_key(const gl_batch *b, size_t f) {
    return view(&b->keys.ptr[b->fields.ptr[4 * f + 1]]);
}

gl_str gl_field_value(const gl_batch *b, size_t f) {
    gl_str v = {b->values.ptr + b->fields.ptr[4 * f + 2], b->fields.ptr[4 * f + 3]};
    return v;
}

enum gl_type gl_field_type(const gl_batch *b, size_t f) {
    return (enum gl_type)b->field_types.ptr[f];
}

/* The value's text, NUL-terminated in buf, or false if it is too long. */
static bool text_of(const gl_batch *b, size_t f, char *buf, size_t cap) {
    gl_str v = gl_field_value(b, f);
    if (v.len + 1 > cap) return false;
    memcpy(buf, v.ptr, v.len);
    buf[v.len] = 0;
    return true;
}

bool gl_field_int(const gl_batch *b, size_t f, int64_t *out) {
    char buf[32];
    if (gl_field_type(b, f) != GL_INT || !text_of(b, f, buf, sizeof buf)) return false;
    *out = strtoll(buf, NULL, 10);
    return true;
}

bool gl_field_float(const gl_batch *b, size_t f, double *out) {
    char buf[64];
    enum gl_type t = gl_field_type(b, f);
    if ((t != GL_INT && t != GL_FLOAT) || !text_of(b, f, buf, sizeof buf)) return false;
    *out = strtod(buf, NULL);
    return true;
}

gl_str gl_tag(const gl_batch *b, const char *key) {
    gl_str k = gl_cstr(key);
    for (size_t i = 0; i < b->tags.len; i++) {
        if (gl_eq(view(&b->tags.ptr[i].f0), k)) return view(&b->tags.ptr[i].f1);
    }
    gl_str none = {NULL, 0};
    return none;
}

/* --- Building ------------------------------------------------------- */

/* Makes room for `more` items of `size` bytes in *ptr (capacity *cap). */
static bool grow(void **ptr, size_t len, size_t *cap, size_t more, size_t size) {
    if (len + more <= *cap) return true;
    size_t want = *cap ? *cap * 2 : 64;
    while (want < len + more) want *= 2;
    void *p = realloc(*ptr, want * size);
    if (!p) return false;
    *ptr = p;
    *cap = want;
    return true;
}

#define GROW(list, capf, more) \
    grow((void **)&(list).ptr, (list).len, &o->capf, (more), sizeof(*(list).ptr))

bool gl_begin(gl_builder *o, int64_t timestamp) {
    if (o->open && !gl_end(o)) return false;
    if (!GROW(o->batch.timestamps, cap_timestamps, 1)) return false;
    if (!GROW(o->batch.severities, cap_severities, 1)) return false;
    o->batch.timestamps.ptr[o->batch.timestamps.len++] = timestamp;
    o->batch.severities.ptr[o->batch.severities.len++] = 0;
    o->last_fields = o->batch.field_types.len;
    o->open = true;
    return true;
}

bool gl_append(gl_builder *o, const uint8_t *p, size_t n) {
    if (n == 0) return true;
    if (!GROW(o->batch.bodies, cap_bodies, n)) return false;
    memcpy(o->batch.bodies.ptr + o->batch.bodies.len, p, n);
    o->batch.bodies.len += n;
    return true;
}

bool gl_end(gl_builder *o) {
    if (!o->open) return true;
    if (!GROW(o->batch.body_ends, cap_ends, 1)) return false;
    o->batch.body_ends.ptr[o->batch.body_ends.len++] = (uint32_t)o->batch.bodies.len;
    o->open = false;
    return true;
}

bool gl_push(gl_builder *o, int64_t timestamp, gl_str body) {
    return gl_begin(o, timestamp) && gl_append(o, body.ptr, body.len) && gl_end(o);
}

/* A malloc'd copy of v (an empty one holds no allocation, as the
 * generated free functions expect). */
static bool dup_into(gl_wstring *s, gl_str v) {
    s->len = 0;
    s->ptr = NULL;
    if (v.len == 0) return true;
    s->ptr = malloc(v.len);
    if (!s->ptr) return false;
    memcpy(s->ptr, v.ptr, v.len);
    s->len = v.len;
    return true;
}

uint32_t gl_key(gl_builder *o, gl_str key) {
    for (size_t i = 0; i < o->batch.keys.len; i++) {
        if (gl_eq(view(&o->batch.keys.ptr[i]), key)) return (uint32_t)i;
    }
    /* Out of memory here has no error path worth having: trap (the host
     * rebuilds the instance and retries per policy). */
    if (!GROW(o->batch.keys, cap_keys, 1)) abort();
    if (!dup_into(&o->batch.keys.ptr[o->batch.keys.len], key)) abort();
    return (uint32_t)o->batch.keys.len++;
}

bool gl_value(gl_builder *o, uint32_t key, enum gl_type type, gl_str text) {
    if (o->batch.timestamps.len == 0) return true;
    if (!GROW(o->batch.values, cap_values, text.len)) return false;
    uint32_t start = (uint32_t)o->batch.values.len;
    if (text.len) memcpy(o->batch.values.ptr + start, text.ptr, text.len);
    o->batch.values.len += text.len;
    uint32_t *f = o->batch.fields.ptr;
    /* Setting a key the event has replaces its value. */
    for (size_t i = o->last_fields; i < o->batch.field_types.len; i++) {
        if (f[4 * i + 1] == key) {
            f[4 * i + 2] = start;
            f[4 * i + 3] = (uint32_t)text.len;
            o->batch.field_types.ptr[i] = (uint8_t)type;
            return true;
        }
    }
    if (!GROW(o->batch.fields, cap_fields, 4)) return false;
    if (!GROW(o->batch.field_types, cap_types, 1)) return false;
    f = o->batch.fields.ptr + o->batch.fields.len;
    f[0] = (uint32_t)(o->batch.timestamps.len - 1);
    f[1] = key;
    f[2] = start;
    f[3] = (uint32_t)text.len;
    o->batch.fields.len += 4;
    o->batch.field_types.ptr[o->batch.field_types.len++] = (uint8_t)type;
    return true;
}

bool gl_field(gl_builder *o, uint32_t key, gl_str value) {
    return gl_value(o, key, GL_STRING, value);
}

bool gl_value_int(gl_builder *o, uint32_t key, int64_t value) {
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)value);
    gl_str v = {(const uint8_t *)buf, (size_t)n};
    return gl_value(o, key, GL_INT, v);
}

bool gl_value_float(gl_builder *o, uint32_t key, double value) {
    if (value != value || value - value != 0) return gl_value_null(o, key);
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%.17g", value);
    /* %g may give `1e+20`, valid JSON; never `inf` here. */
    gl_str v = {(const uint8_t *)buf, (size_t)n};
    return gl_value(o, key, GL_FLOAT, v);
}

bool gl_value_bool(gl_builder *o, uint32_t key, bool value) {
    return gl_value(o, key, GL_BOOL, gl_cstr(value ? "true" : "false"));
}

bool gl_value_null(gl_builder *o, uint32_t key) {
    return gl_value(o, key, GL_NULL, gl_cstr("null"));
}

bool gl_value_json(gl_builder *o, uint32_t key, gl_str json) {
    return gl_value(o, key, GL_JSON, json);
}

bool gl_set_severity(gl_builder *o, uint8_t severity) {
    if (o->batch.severities.len == 0) return true;
    o->batch.severities.ptr[o->batch.severities.len - 1] = severity > 24 ? 24 : severity;
    return true;
}

bool gl_copy_fields(gl_builder *o, const gl_batch *in, size_t event, size_t *next) {
    size_t n = gl_field_count(in);
    while (*next < n && gl_field_event(in, *next) < event) (*next)++;
    for (; *next < n && gl_field_event(in, *next) == event; (*next)++) {
        uint32_t k = gl_key(o, gl_field_key(in, *next));
        if (!gl_value(o, k, gl_field_type(in, *next), gl_field_value(in, *next))) return false;
    }
    return true;
}

bool gl_push_copy(gl_builder *o, const gl_batch *in, size_t i, size_t *next) {
    return gl_push(o, gl_timestamp(in, i), gl_body(in, i)) &&
           gl_set_severity(o, gl_severity(in, i)) && gl_copy_fields(o, in, i, next);
}

/* Appends a tag, taking ownership of its strings (tags are few: the list
 * grows one at a time). */
static bool append_tag(gl_builder *o, gl_wtag tag) {
    gl_wtag *p = realloc(o->batch.tags.ptr, (o->batch.tags.len + 1) * sizeof(gl_wtag));
    if (!p) return false;
    o->batch.tags.ptr = p;
    p[o->batch.tags.len++] = tag;
    return true;
}

bool gl_set_tag(gl_builder *o, const char *key, gl_str value) {
    gl_str k = gl_cstr(key);
    for (size_t i = 0; i < o->batch.tags.len; i++) {
        gl_wtag *t = &o->batch.tags.ptr[i];
        if (gl_eq(view(&t->f0), k)) {
            gl_wstring v;
            if (!dup_into(&v, value)) return false;
            free(t->f1.ptr);
            t->f1 = v;
            return true;
        }
    }
    gl_wtag t;
    if (!dup_into(&t.f0, k)) return false;
    if (!dup_into(&t.f1, value) || !append_tag(o, t)) {
        free(t.f0.ptr);
        free(t.f1.ptr);
        return false;
    }
    return true;
}

/* --- Errors and the host -------------------------------------------- */

/* Formats into a malloc'd string (the host frees it after the call). */
static bool vformat(gl_wstring *out, const char *fmt, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0) n = 0;
    out->ptr = malloc((size_t)n + 1);
    if (!out->ptr) {
        out->len = 0;
        return false;
    }
    vsnprintf((char *)out->ptr, (size_t)n + 1, fmt, ap);
    out->len = (size_t)n;
    return true;
}

bool gl_fail(gl_error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vformat(err, fmt, ap);
    va_end(ap);
    return false;
}

void gl_log(enum gl_level level, const char *fmt, ...) {
    gl_wstring s;
    va_list ap;
    va_start(ap, fmt);
    bool ok = vformat(&s, fmt, ap);
    va_end(ap);
    if (!ok) return;
    GL_P(host_log)((GL_P(host_level_t))level, &s);
    free(s.ptr);
}

void gl_counter_add(const char *name, uint64_t delta) {
    gl_wstring s = {(uint8_t *)name, strlen(name)};
    GL_P(host_counter_add)(&s, delta);
}

/* Copies a host error into `why` (NUL-terminated, cut to `cap` bytes) and
 * frees it; false, for `return take_error(...)`. */
static bool take_error(gl_wstring *err, char *why, size_t cap) {
    if (cap > 0) {
        size_t n = err->len < cap - 1 ? err->len : cap - 1;
        memcpy(why, err->ptr, n);
        why[n] = 0;
    }
    GL_W(string_free)(err);
    return false;
}

bool gl_compress(enum gl_codec codec, gl_str data, gl_bytes *out, char *why, size_t cap) {
    GL_W(list_u8_t) in = {(uint8_t *)data.ptr, data.len};
    GL_W(list_u8_t) ret = {0};
    gl_wstring err = {0};
    if (GL_P(host_compress)((GL_P(types_codec_t))codec, &in, &ret, &err)) {
        out->ptr = ret.ptr;
        out->len = ret.len;
        return true;
    }
    return take_error(&err, why, cap);
}

void gl_sha256(gl_str data, uint8_t out[32]) {
    GL_W(list_u8_t) in = {(uint8_t *)data.ptr, data.len};
    GL_W(list_u8_t) ret = {0};
    GL_P(host_hash)(GLEANER_PLUGIN_0_4_0_TYPES_HASH_ALGORITHM_SHA256, &in, &ret);
    memset(out, 0, 32);
    memcpy(out, ret.ptr, ret.len < 32 ? ret.len : 32);
    free(ret.ptr);
}

void gl_bytes_free(gl_bytes *b) {
    free(b->ptr);
    b->ptr = NULL;
    b->len = 0;
}

/* --- Host kernels --------------------------------------------------- */

/* The kernels borrow the batch's columns; the generated signatures are
 * not const, the host never writes through them. */
#define GL_BODIES(in) ((GL_W(list_u8_t) *)&(in)->bodies)
#define GL_ENDS(in) ((GL_W(list_u32_t) *)&(in)->body_ends)
#define GL_BORROW(re) GL_P(kernels_borrow_regex)((re)->handle)

bool gl_regex_compile(gl_regex *re, const char *pattern, char *why, size_t cap) {
    gl_wstring p = {(uint8_t *)pattern, strlen(pattern)};
    gl_wstring err = {0};
    if (GL_P(kernels_static_regex_compile)(&p, &re->handle, &err)) return true;
    return take_error(&err, why, cap);
}

void gl_regex_free(gl_regex *re) { GL_P(kernels_regex_drop_own)(re->handle); }

gl_names gl_regex_group_names(const gl_regex *re) {
    gl_names out;
    GL_P(kernels_method_regex_group_names)(GL_BORROW(re), &out);
    return out;
}

gl_events gl_regex_matching(const gl_regex *re, const gl_batch *in) {
    gl_events out;
    GL_P(kernels_method_regex_matching)(GL_BORROW(re), GL_BODIES(in), GL_ENDS(in), &out);
    return out;
}

/* The kernels answer flat u32 columns; gl_span, gl_capture and gl_member
 * are 3 or 4 u32 with no padding, so the column is read as an array of
 * them in place. */
gl_spans gl_regex_find_all(const gl_regex *re, const gl_batch *in) {
    gl_events flat;
    GL_P(kernels_method_regex_find_all)(GL_BORROW(re), GL_BODIES(in), GL_ENDS(in), &flat);
    gl_spans out = {(gl_span *)flat.ptr, flat.len / 3};
    return out;
}

gl_captures gl_regex_captures(const gl_regex *re, const gl_batch *in) {
    gl_events flat;
    GL_P(kernels_method_regex_captures)(GL_BORROW(re), GL_BODIES(in), GL_ENDS(in), &flat);
    gl_captures out = {(gl_capture *)flat.ptr, flat.len / 4};
    return out;
}

gl_json_members gl_json_extract(const gl_batch *in, const char *const *paths, size_t n) {
    GL_P(kernels_json_members_t) raw;
    gl_wstring *list = n ? malloc(n * sizeof *list) : NULL;
    /* Out of memory: a trap (the host rebuilds the instance), never a
     * silently empty answer. */
    if (n && !list) __builtin_trap();
    for (size_t i = 0; i < n; i++) list[i] = (gl_wstring){(uint8_t *)paths[i], strlen(paths[i])};
    GL_W(list_string_t) l = {list, n};
    GL_P(kernels_json_extract)(GL_BODIES(in), GL_ENDS(in), &l, &raw);
    free(list);
    gl_json_members out;
    out.values = raw.values;
    out.fields.ptr = (gl_member *)raw.fields.ptr;
    out.fields.len = raw.fields.len / 4;
    out.types = raw.types;
    out.invalid = raw.invalid;
    return out;
}

_Static_assert(sizeof(gl_span) == 12 && sizeof(gl_capture) == 16 && sizeof(gl_member) == 16,
               "kernel results are read in place as arrays of these");

void gl_names_free(gl_names *l) { GL_W(list_string_free)(l); }
void gl_events_free(gl_events *l) { GL_W(list_u32_free)(l); }
void gl_spans_free(gl_spans *l) {
    free(l->ptr);
    l->ptr = NULL;
    l->len = 0;
}
void gl_captures_free(gl_captures *l) {
    free(l->ptr);
    l->ptr = NULL;
    l->len = 0;
}
void gl_json_members_free(gl_json_members *m) {
    GL_W(list_u8_free)(&m->values);
    free(m->fields.ptr);
    m->fields.ptr = NULL;
    m->fields.len = 0;
    GL_W(list_u8_free)(&m->types);
    GL_W(list_u32_free)(&m->invalid);
}

gl_str gl_column(const gl_batch *in, uint32_t start, uint32_t len) {
    return (gl_str){in->bodies.ptr + start, len};
}

/* --- Config --------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
} cursor;

static void ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hex4(const uint8_t *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int d = p[i];
        v <<= 4;
        if (d >= '0' && d <= '9') v |= d - '0';
        else if (d >= 'a' && d <= 'f') v |= d - 'a' + 10;
        else if (d >= 'A' && d <= 'F') v |= d - 'A' + 10;
        else return -1;
    }
    return v;
}

/* Reads a JSON string at c (after the opening quote was checked);
 * decodes into out (cap bytes, may be NULL to skip). Returns the decoded
 * length, or -1 if malformed or too long. */
static long string_value(cursor *c, char *out, size_t cap) {
    size_t n = 0;
    c->p++; /* opening quote */
    while (c->p < c->end && *c->p != '"') {
        uint32_t cp = *c->p++;
        if (cp == '\\') {
            if (c->p >= c->end) return -1;
            uint8_t e = *c->p++;
            switch (e) {
            case 'n': cp = '\n'; break;
            case 't': cp = '\t'; break;
            case 'r': cp = '\r'; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'u': {
                if (c->end - c->p < 4) return -1;
                int v = hex4(c->p);
                if (v < 0) return -1;
                c->p += 4;
                cp = (uint32_t)v;
                if (cp >= 0xD800 && cp < 0xDC00 && c->end - c->p >= 6 && c->p[0] == '\\' &&
                    c->p[1] == 'u') {
                    int lo = hex4(c->p + 2);
                    if (lo >= 0xDC00 && lo < 0xE000) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                        c->p += 6;
                    }
                }
                break;
            }
            default: cp = e; /* \" \\ \/ */
            }
            uint8_t buf[4];
            size_t k;
            if (cp < 0x80) { buf[0] = (uint8_t)cp; k = 1; }
            else if (cp < 0x800) { buf[0] = 0xC0 | (cp >> 6); buf[1] = 0x80 | (cp & 0x3F); k = 2; }
            else if (cp < 0x10000) { buf[0] = 0xE0 | (cp >> 12); buf[1] = 0x80 | ((cp >> 6) & 0x3F); buf[2] = 0x80 | (cp & 0x3F); k = 3; }
            else { buf[0] = 0xF0 | (cp >> 18); buf[1] = 0x80 | ((cp >> 12) & 0x3F); buf[2] = 0x80 | ((cp >> 6) & 0x3F); buf[3] = 0x80 | (cp & 0x3F); k = 4; }
            for (size_t i = 0; i < k; i++) {
                if (out) {
                    if (n + 1 >= cap) return -1;
                    out[n] = (char)buf[i];
                }
                n++;
            }
            continue;
        }
        if (out) {
            if (n + 1 >= cap) return -1;
            out[n] = (char)cp;
        }
        n++;
    }
    if (c->p >= c->end) return -1;
    c->p++; /* closing quote */
    if (out) out[n] = 0;
    return (long)n;
}

/* Skips any JSON value. */
static bool skip_value(cursor *c) {
    ws(c);
    if (c->p >= c->end) return false;
    if (*c->p == '"') return string_value(c, NULL, 0) >= 0;
    if (*c->p == '{' || *c->p == '[') {
        int depth = 0;
        while (c->p < c->end) {
            if (*c->p == '"') {
                if (string_value(c, NULL, 0) < 0) return false;
                continue;
            }
            if (*c->p == '{' || *c->p == '[') depth++;
            if (*c->p == '}' || *c->p == ']') depth--;
            c->p++;
            if (depth == 0) return true;
        }
        return false;
    }
    while (c->p < c->end && *c->p != ',' && *c->p != '}' && *c->p != ']') c->p++;
    return true;
}

int gl_config_string(gl_str config, const char *key, char *out, size_t cap) {
    cursor c = {config.ptr, config.ptr + config.len};
    size_t klen = strlen(key);
    ws(&c);
    if (c.p >= c.end || *c.p != '{') return 0;
    c.p++;
    for (;;) {
        ws(&c);
        if (c.p >= c.end || *c.p == '}') return 0;
        if (*c.p != '"') return 0;
        char name[256];
        long n = string_value(&c, name, sizeof name);
        ws(&c);
        if (c.p >= c.end || *c.p != ':') return 0;
        c.p++;
        ws(&c);
        if (n >= 0 && (size_t)n == klen && memcmp(name, key, klen) == 0) {
            if (c.p >= c.end || *c.p != '"') return -1;
            return string_value(&c, out, cap) >= 0 ? 1 : -1;
        }
        if (!skip_value(&c)) return 0;
        ws(&c);
        if (c.p < c.end && *c.p == ',') c.p++;
    }
}

/* --- Exports -------------------------------------------------------- */

#if defined(GLEANER_PROCESSOR)

/* The generated glue passes `err` uninitialised: clear it, so a plugin
 * that returns false without gl_fail still reports something. */
static void clear_error(gl_wstring *err) {
    err->ptr = NULL;
    err->len = 0;
}

bool exports_processor_init(processor_string_t *config, processor_string_t *err) {
    clear_error(err);
    bool ok = gleaner_init(view(config), err);
    if (!ok && err->ptr == NULL) gl_fail(err, "init failed");
    processor_string_free(config);
    return ok;
}

static void builder_free(gl_builder *o) { GL_P(types_batch_free)(&o->batch); }

bool exports_processor_process(processor_batch_t *input, processor_batch_t *ret,
                               processor_string_t *err) {
    gl_builder o;
    memset(&o, 0, sizeof o);
    clear_error(err);
    bool ok = gleaner_process(input, &o, err) && gl_end(&o);
    if (!ok) {
        if (err->ptr == NULL) gl_fail(err, "the plugin failed without a message (or ran out of memory)");
        builder_free(&o);
        GL_P(types_batch_free)(input);
        return false;
    }
    /* The input's tags pass through, under the ones the plugin set. */
    for (size_t i = 0; i < input->tags.len; i++) {
        gl_wtag *t = &input->tags.ptr[i];
        bool set = false;
        for (size_t j = 0; j < o.batch.tags.len; j++) {
            if (gl_eq(view(&o.batch.tags.ptr[j].f0), view(&t->f0))) set = true;
        }
        if (set) continue;
        if (!append_tag(&o, *t)) {
            builder_free(&o);
            GL_P(types_batch_free)(input);
            return gl_fail(err, "out of memory");
        }
        /* Moved: the input no longer owns these strings. */
        memset(t, 0, sizeof *t);
    }
    GL_P(types_batch_free)(input);
    *ret = o.batch;
    return true;
}

#else

/* Not a WIT tag: marks a flush error nobody set. */
#define GLEANER_PLUGIN_0_4_0_TYPES_FLUSH_ERROR_UNSET 0xFF

static bool vflush_error(gl_flush_error *err, uint8_t tag, const char *fmt, va_list ap) {
    err->tag = tag;
    vformat(tag == GLEANER_PLUGIN_0_4_0_TYPES_FLUSH_ERROR_RETRYABLE ? &err->val.retryable
                                                             : &err->val.rejected,
            fmt, ap);
    return false;
}

bool gl_retry(gl_flush_error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vflush_error(err, GLEANER_PLUGIN_0_4_0_TYPES_FLUSH_ERROR_RETRYABLE, fmt, ap);
    va_end(ap);
    return false;
}

bool gl_reject(gl_flush_error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vflush_error(err, GLEANER_PLUGIN_0_4_0_TYPES_FLUSH_ERROR_REJECTED, fmt, ap);
    va_end(ap);
    return false;
}

bool exports_flusher_init(flusher_string_t *config, flusher_string_t *err) {
    err->ptr = NULL;
    err->len = 0;
    bool ok = gleaner_init(view(config), err);
    if (!ok && err->ptr == NULL) gl_fail(err, "init failed");
    flusher_string_free(config);
    return ok;
}

/* The per-item answer of the call in progress. */
static GL_P(types_flush_report_t) report;
static size_t cap_retry, cap_rejected;

bool gl_report_retry(size_t event) {
    GL_W(list_u32_t) *l = &report.retry;
    if (!grow((void **)&l->ptr, l->len, &cap_retry, 1, sizeof *l->ptr)) return false;
    l->ptr[l->len++] = (uint32_t)event;
    return true;
}

bool gl_report_reject(size_t event, const char *fmt, ...) {
    GL_W(list_u32_t) *l = &report.rejected;
    size_t cap = cap_rejected;
    if (!grow((void **)&l->ptr, l->len, &cap_rejected, 1, sizeof *l->ptr)) return false;
    GL_W(list_string_t) *r = &report.reasons;
    if (!grow((void **)&r->ptr, r->len, &cap, 1, sizeof *r->ptr)) return false;
    va_list ap;
    va_start(ap, fmt);
    bool ok = vformat(&r->ptr[r->len], fmt, ap);
    va_end(ap);
    if (!ok) return false;
    r->len++;
    l->ptr[l->len++] = (uint32_t)event;
    return true;
}

bool exports_flusher_flush(flusher_batch_t *input, flusher_flush_report_t *ret,
                           flusher_flush_error_t *err) {
    memset(err, 0, sizeof *err);
    memset(&report, 0, sizeof report);
    cap_retry = cap_rejected = 0;
    err->tag = GLEANER_PLUGIN_0_4_0_TYPES_FLUSH_ERROR_UNSET;
    bool ok = gleaner_flush(input, err);
    if (!ok && err->tag == GLEANER_PLUGIN_0_4_0_TYPES_FLUSH_ERROR_UNSET)
        gl_retry(err, "flush failed");
    if (ok) {
        *ret = report; /* the generated glue frees it after the call */
    } else {
        GL_P(types_flush_report_free)(&report);
    }
    GL_P(types_batch_free)(input);
    return ok;
}

#endif
