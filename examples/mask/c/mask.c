/*
 * The masking processor (examples/mask/README.md) with the C SDK: emails
 * and card numbers are replaced, and a `redactions` field is added.
 */
#include "gleaner.h"

#include <stdlib.h>
#include <string.h>

static char email_mask[128] = "[email]";
static char card_mask[128] = "[card]";

/* Every email has a local-part character right before its `@`, and every
 * card number 13 digits in a row with at most one space or `-` between
 * two: a body with neither cannot change. The host finds the bodies that
 * might, natively, in one call per batch. */
static gl_regex candidates;
static bool compiled;

bool gleaner_init(gl_str config, gl_error *err) {
    if (gl_config_string(config, "email", email_mask, sizeof email_mask) < 0)
        return gl_fail(err, "email: must be a string of at most 127 bytes");
    if (gl_config_string(config, "card", card_mask, sizeof card_mask) < 0)
        return gl_fail(err, "card: must be a string of at most 127 bytes");
    char why[256];
    if (!compiled && !gl_regex_compile(&candidates, "[A-Za-z0-9._%+-]@|[0-9](?:[ -]?[0-9]){12}", why, sizeof why))
        return gl_fail(err, "candidate regex: %s", why);
    compiled = true;
    return true;
}

static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static bool is_alpha(uint8_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static bool is_alnum(uint8_t c) { return is_digit(c) || is_alpha(c); }
static bool is_local(uint8_t c) {
    return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}
static bool is_domain(uint8_t c) { return is_alnum(c) || c == '.' || c == '-'; }

/* The end of the email whose `@` is at `at`, with its start in *start;
 * 0 if there is none. */
static size_t email_at(const uint8_t *s, size_t n, size_t at, size_t *start) {
    size_t l = at;
    while (l > 0 && is_local(s[l - 1])) l--;
    if (l == at) return 0;
    size_t r = at + 1;
    while (r < n && is_domain(s[r])) r++;
    while (r > at + 1 && (s[r - 1] == '.' || s[r - 1] == '-')) r--;
    size_t dot = 0;
    for (size_t i = at + 2; i < r; i++) {
        if (s[i] == '.') dot = i;
    }
    if (dot == 0 || r - dot - 1 < 2) return 0;
    for (size_t i = dot + 1; i < r; i++) {
        if (!is_alpha(s[i])) return 0;
    }
    *start = l;
    return r;
}

/* Pass 1: emails. Appends the masked body to `out`; returns the count. */
static size_t mask_emails(const uint8_t *s, size_t n, uint8_t *out, size_t *len) {
    size_t count = 0, from = 0, i = 0, o = 0;
    while (i < n) {
        size_t start, end;
        if (s[i] == '@' && (end = email_at(s, n, i, &start)) != 0 && start >= from) {
            memcpy(out + o, s + from, start - from);
            o += start - from;
            size_t m = strlen(email_mask);
            memcpy(out + o, email_mask, m);
            o += m;
            from = i = end;
            count++;
            continue;
        }
        i++;
    }
    memcpy(out + o, s + from, n - from);
    *len = o + n - from;
    return count;
}

static bool luhn(const uint8_t *digits, size_t n) {
    unsigned sum = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned d = digits[n - 1 - k];
        if (k % 2 == 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
        sum += d;
    }
    return sum % 10 == 0;
}

/* Pass 2: card numbers, from s into the builder's current event. */
static bool mask_cards(gl_builder *o, const uint8_t *s, size_t n, size_t *count) {
    size_t from = 0, i = 0;
    while (i < n) {
        if (!is_digit(s[i]) || (i > 0 && is_alnum(s[i - 1]))) {
            i++;
            continue;
        }
        uint8_t digits[20];
        size_t nd = 0, j = i, end = i;
        bool too_long = false;
        for (;;) {
            while (j < n && is_digit(s[j])) {
                if (nd < sizeof digits) digits[nd] = s[j] - '0';
                else too_long = true;
                nd++;
                j++;
            }
            end = j;
            if (j + 1 < n && (s[j] == ' ' || s[j] == '-') && is_digit(s[j + 1])) {
                j++;
                continue;
            }
            break;
        }
        bool bounded = end == n || !is_alnum(s[end]);
        if (bounded && !too_long && nd >= 13 && nd <= 19 && luhn(digits, nd)) {
            size_t m = strlen(card_mask);
            if (!gl_append(o, s + from, i - from) || !gl_append(o, (const uint8_t *)card_mask, m))
                return false;
            from = end;
            (*count)++;
        }
        i = end;
    }
    return gl_append(o, s + from, n - from);
}

/* `count` as decimal text into `num`; returns its length. */
static size_t decimal(size_t count, char num[24]) {
    char rev[24];
    size_t k = 0;
    do { rev[k++] = (char)('0' + count % 10); count /= 10; } while (count);
    for (size_t d = 0; d < k; d++) num[d] = rev[k - 1 - d];
    return k;
}

bool gleaner_process(const gl_batch *in, gl_builder *out, gl_error *err) {
    uint32_t redactions = gl_key(out, gl_cstr("redactions"));
    size_t next_field = 0;
    uint8_t *scratch = NULL;
    size_t scratch_cap = 0;
    gl_events maybe = gl_regex_matching(&candidates, in);
    size_t next_maybe = 0;
    bool ok = true;
    for (size_t i = 0; ok && i < gl_len(in); i++) {
        gl_str body = gl_body(in, i);
        if (next_maybe == maybe.len || maybe.ptr[next_maybe] != i) {
            /* Nothing to mask: the event passes as it is. */
            ok = gl_push_copy(out, in, i, &next_field) &&
                 gl_field(out, redactions, gl_cstr("0"));
            continue;
        }
        next_maybe++;
        /* A mask may be longer than what it replaces (an email is at
         * least 6 bytes: a@b.cd). */
        size_t need = body.len + (body.len / 6 + 1) * strlen(email_mask) + 1;
        if (need > scratch_cap) {
            uint8_t *p = realloc(scratch, need);
            if (!p) {
                ok = false;
                break;
            }
            scratch = p;
            scratch_cap = need;
        }
        size_t len;
        size_t count = mask_emails(body.ptr, body.len, scratch, &len);
        char num[24];
        ok = gl_begin(out, gl_timestamp(in, i)) && mask_cards(out, scratch, len, &count) &&
             gl_end(out) && gl_set_severity(out, gl_severity(in, i)) &&
             gl_copy_fields(out, in, i, &next_field);
        if (ok) {
            gl_str v = {(const uint8_t *)num, decimal(count, num)};
            ok = gl_field(out, redactions, v);
        }
    }
    free(scratch);
    gl_events_free(&maybe);
    return ok || gl_fail(err, "out of memory");
}
