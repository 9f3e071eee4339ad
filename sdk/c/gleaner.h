/*
 * Gleaner plugin SDK for C: a small layer over the bindings wit-bindgen
 * generates from wit/plugin.wit (sdk/c/gen/), so a plugin reads batches,
 * builds batches and talks to the host without touching the wire layout
 * or the canonical ABI's ownership rules.
 *
 * The world comes from the compiler: -DGLEANER_PROCESSOR or
 * -DGLEANER_FLUSHER (plugin.mk sets it from WORLD). Implement, for a
 * processor,
 *
 *     bool gleaner_init(gl_str config, gl_error *err);
 *     bool gleaner_process(const gl_batch *in, gl_builder *out, gl_error *err);
 *
 * or, for a flusher,
 *
 *     bool gleaner_init(gl_str config, gl_error *err);
 *     bool gleaner_flush(const gl_batch *in, gl_flush_error *err);
 *
 * Return false after gl_fail() / gl_retry() / gl_reject() to report an
 * error. `in` is valid only during the call; gleaner.c frees it (and
 * moves its tags into `out`, where they pass through unless you change
 * them). See sdk/c/README.md and the example in examples/mask/c.
 */
#ifndef GLEANER_H
#define GLEANER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(GLEANER_PROCESSOR)
#include "processor.h"
#define GL_W(x) processor_##x
#elif defined(GLEANER_FLUSHER)
#include "flusher.h"
#define GL_W(x) flusher_##x
#else
#error "compile with -DGLEANER_PROCESSOR or -DGLEANER_FLUSHER (plugin.mk does)"
#endif

/* Generated names carry the WIT package version (gleaner:plugin@0.4.0),
 * since wit/deps/ holds the frozen earlier versions. */
#define GL_P(x) gleaner_plugin_0_4_0_##x

#ifdef __cplusplus
extern "C" {
#endif

/* A view of bytes (not NUL-terminated, not owned). */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} gl_str;

/* The WIT batch. Read it with the gl_* accessors below. */
typedef GL_P(types_batch_t) gl_batch;

/* Where an error message goes (set it with gl_fail). */
typedef GL_W(string_t) gl_error;

/* A view of a NUL-terminated C string. */
gl_str gl_cstr(const char *s);
/* True if the two views hold the same bytes. */
bool gl_eq(gl_str a, gl_str b);

/* --- Reading a batch ------------------------------------------------ */

/* The type of a field's value. A value is always held as text (what
 * gl_field_value gives): `200`, `0.5`, `true`, `null`, `["a"]`. */
enum gl_type { GL_STRING, GL_INT, GL_FLOAT, GL_BOOL, GL_NULL, GL_JSON };

/* OpenTelemetry's severity numbers (1-24; 0 = unset): the first of each
 * range; WARN + 1 is WARN2. */
enum gl_severity_number {
    GL_SEVERITY_UNSET = 0,
    GL_SEVERITY_TRACE = 1,
    GL_SEVERITY_DEBUG = 5,
    GL_SEVERITY_INFO = 9,
    GL_SEVERITY_WARN = 13,
    GL_SEVERITY_ERROR = 17,
    GL_SEVERITY_FATAL = 21
};

/* Number of events. */
size_t gl_len(const gl_batch *b);
/* Event i's body. */
gl_str gl_body(const gl_batch *b, size_t i);
/* Event i's timestamp, ns since the Unix epoch. */
int64_t gl_timestamp(const gl_batch *b, size_t i);
/* Event i's severity (0 = unset). */
uint8_t gl_severity(const gl_batch *b, size_t i);
/* Number of fields (of all events), in event order. */
size_t gl_field_count(const gl_batch *b);
/* Field f: its event, name, value (as text) and type. */
uint32_t gl_field_event(const gl_batch *b, size_t f);
gl_str gl_field_key(const gl_batch *b, size_t f);
gl_str gl_field_value(const gl_batch *b, size_t f);
enum gl_type gl_field_type(const gl_batch *b, size_t f);
/* Field f's number: true for an int (gl_field_int) or an int or float
 * (gl_field_float), with the value in *out. */
bool gl_field_int(const gl_batch *b, size_t f, int64_t *out);
bool gl_field_float(const gl_batch *b, size_t f, double *out);
/* The value of tag `key`, or a view with ptr == NULL. */
gl_str gl_tag(const gl_batch *b, const char *key);

/* --- Building a batch ----------------------------------------------- */

/* Growable output batch. Filled by the plugin, handed to the host by
 * gleaner.c. All functions return false only when memory runs out. */
typedef struct gl_builder {
    gl_batch batch;
    size_t cap_timestamps, cap_severities, cap_bodies, cap_ends, cap_keys, cap_values,
        cap_fields, cap_types;
    size_t last_fields; /* the first field of the last event begun */
    bool open;          /* an event is being built */
} gl_builder;

/* Starts an event; its body is what gl_append adds until gl_end. */
bool gl_begin(gl_builder *o, int64_t timestamp);
bool gl_append(gl_builder *o, const uint8_t *p, size_t n);
bool gl_end(gl_builder *o);
/* Adds a whole event. */
bool gl_push(gl_builder *o, int64_t timestamp, gl_str body);
/* The index of field name `key` in the output (interned once per batch:
 * look it up once, reuse it for every event). */
uint32_t gl_key(gl_builder *o, gl_str key);
/* Sets text field `key` = `value` on the last event begun, replacing the
 * event's value of `key` if it has one. */
bool gl_field(gl_builder *o, uint32_t key, gl_str value);
/* Sets a typed field the same way. */
bool gl_value_int(gl_builder *o, uint32_t key, int64_t value);
bool gl_value_float(gl_builder *o, uint32_t key, double value); /* NaN, inf: null */
bool gl_value_bool(gl_builder *o, uint32_t key, bool value);
bool gl_value_null(gl_builder *o, uint32_t key);
/* `json`: a compact JSON array or object. */
bool gl_value_json(gl_builder *o, uint32_t key, gl_str json);
/* A field of type `type` from its text, which must be what the type says
 * (the host refuses a batch where it is not). */
bool gl_value(gl_builder *o, uint32_t key, enum gl_type type, gl_str text);
/* Sets the last event's severity (1-24; 0 = unset). */
bool gl_set_severity(gl_builder *o, uint8_t severity);
/* Copies every field of input event `event`, with its type, to the last
 * event begun (fields are in event order, so pass the running index
 * `*next` from 0). */
bool gl_copy_fields(gl_builder *o, const gl_batch *in, size_t event, size_t *next);
/* Appends a copy of input event `i`: timestamp, severity, body and typed
 * fields (`*next` as for gl_copy_fields). */
bool gl_push_copy(gl_builder *o, const gl_batch *in, size_t i, size_t *next);
/* Adds (or replaces) a batch tag. */
bool gl_set_tag(gl_builder *o, const char *key, gl_str value);

/* --- Errors and the host -------------------------------------------- */

/* Sets the error message (printf-style); returns false for `return gl_fail(...)`. */
bool gl_fail(gl_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

enum gl_level { GL_TRACE, GL_DEBUG, GL_INFO, GL_WARN, GL_ERROR };
/* Writes to the host's log (printf-style). Never per event at info or above. */
void gl_log(enum gl_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Adds to the plugin counter `name` (exported by the host). */
void gl_counter_add(const char *name, uint64_t delta);
/* The name before 0.3.0. */
#define gl_counter gl_counter_add

enum gl_codec { GL_ZSTD, GL_LZ4, GL_GZIP, GL_SNAPPY };
/* Compresses `data` natively in the host into *out (free it with
 * gl_bytes_free). On error returns false and writes the reason to `why`. */
typedef struct {
    uint8_t *ptr;
    size_t len;
} gl_bytes;
bool gl_compress(enum gl_codec codec, gl_str data, gl_bytes *out, char *why, size_t cap);
void gl_bytes_free(gl_bytes *b);
/* The SHA-256 of `data` into out[32], computed natively in the host. */
void gl_sha256(gl_str data, uint8_t out[32]);

/* --- Host kernels: run natively over every body of a batch --------- */

/* A match: bytes in->bodies.ptr[start .. start + len] of event `event`. */
typedef struct {
    uint32_t event, start, len;
} gl_span;
/* Group `group` (0: the whole match) of event `event`'s first match. */
typedef struct {
    uint32_t event, group, start, len;
} gl_capture;
/* A JSON member: `key` is an index into the paths, start/len are into
 * the members' .values. */
typedef struct {
    uint32_t event, key, start, len;
} gl_member;
/* Lists the kernels return ({ptr, len}); free each with its _free. */
typedef GL_W(list_u32_t) gl_events;
typedef struct {
    gl_span *ptr;
    size_t len;
} gl_spans;
typedef struct {
    gl_capture *ptr;
    size_t len;
} gl_captures;
/* JSON members: .fields, .types (the type of each field's value: strings
 * unescaped, others compact JSON), .values, .invalid (events that are not
 * JSON objects). */
typedef struct {
    GL_W(list_u8_t) values;
    struct {
        gl_member *ptr;
        size_t len;
    } fields;
    GL_W(list_u8_t) types;
    gl_events invalid;
} gl_json_members;

/* A regex compiled and run by the host (Rust `regex` syntax: linear
 * time, no look-around). Compile it once, in gleaner_init. */
typedef struct {
    GL_P(kernels_own_regex_t) handle;
} gl_regex;

/* Compiles `pattern`. On error returns false and writes the reason to
 * `why` (NUL-terminated, cut to `cap` bytes). */
bool gl_regex_compile(gl_regex *re, const char *pattern, char *why, size_t cap);
void gl_regex_free(gl_regex *re);
/* Capture group names, group 0 first ({ptr, len} strings; "" for unnamed). */
typedef GL_W(list_string_t) gl_names;
gl_names gl_regex_group_names(const gl_regex *re);
/* Events of `in` whose body has a match, ascending. */
gl_events gl_regex_matching(const gl_regex *re, const gl_batch *in);
/* Every non-overlapping match, by event, then by position. */
gl_spans gl_regex_find_all(const gl_regex *re, const gl_batch *in);
/* For each event with a match, its first match's groups, group 0 first. */
gl_captures gl_regex_captures(const gl_regex *re, const gl_batch *in);
/* Members of each JSON-object body named by paths[0..n) (`.` descends
 * into nested objects: "http.status"). */
gl_json_members gl_json_extract(const gl_batch *in, const char *const *paths, size_t n);
void gl_names_free(gl_names *l);
void gl_events_free(gl_events *l);
void gl_spans_free(gl_spans *l);
void gl_captures_free(gl_captures *l);
void gl_json_members_free(gl_json_members *m);
/* The bytes a span or capture points at in `in`'s bodies. */
gl_str gl_column(const gl_batch *in, uint32_t start, uint32_t len);

/* --- Config (the JSON document handed to gleaner_init) -------------- */

/* Copies the top-level string value of `key` into `out` (NUL-terminated,
 * JSON escapes decoded). Returns 1 if found, 0 if absent, -1 if it is not
 * a string or does not fit in `cap` bytes. */
int gl_config_string(gl_str config, const char *key, char *out, size_t cap);

/* --- What the plugin implements ------------------------------------- */

bool gleaner_init(gl_str config, gl_error *err);

#if defined(GLEANER_PROCESSOR)
bool gleaner_process(const gl_batch *in, gl_builder *out, gl_error *err);
#else
typedef GL_P(types_flush_error_t) gl_flush_error;
/* Report a transient failure (retried) or a permanent one (dead-lettered). */
bool gl_retry(gl_flush_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool gl_reject(gl_flush_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* For a destination that answers item by item, before returning true:
 * event `event` is to be sent again, or was refused for good (the host
 * retries or dead-letters just those; the others were delivered). Call
 * them in event order. False only when memory runs out. */
bool gl_report_retry(size_t event);
bool gl_report_reject(size_t event, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool gleaner_flush(const gl_batch *in, gl_flush_error *err);
#endif

#ifdef __cplusplus
}
#endif

#endif /* GLEANER_H */
