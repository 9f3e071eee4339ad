"""The masking processor (examples/mask/README.md) with the Python SDK:
emails and card numbers are replaced, and a `redactions` field is added."""

import re

import gleaner_sdk as gl

LOCAL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
DOMAIN = re.compile(rb"[A-Za-z0-9.-]+")
CARD = re.compile(rb"(?<![A-Za-z0-9])[0-9](?:[ -]?[0-9])*")
ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def email_at(s, at):
    """(start, end) of the email whose `@` is at `at`, or None."""
    start = at
    while start > 0 and s[start - 1] in LOCAL:
        start -= 1
    if start == at:
        return None
    d = DOMAIN.match(s, at + 1)
    if d is None:
        return None
    r = d.end()
    while r > at + 1 and s[r - 1] in b".-":
        r -= 1
    dot = s.rfind(b".", at + 2, r)
    if dot < 0 or r - dot - 1 < 2 or not s[dot + 1 : r].isalpha():
        return None
    return start, r


def luhn(digits):
    total = 0
    for k, c in enumerate(reversed(digits)):
        d = c - 48
        if k % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


class Mask(gl.Processor):
    def __init__(self, config):
        for key in ("email", "card"):
            if not isinstance(config.get(key, ""), str):
                raise ValueError(f"{key}: must be a string")
        self.email = config.get("email", "[email]").encode()
        self.card = config.get("card", "[card]").encode()
        # Every email has a local-part character right before its `@`, and
        # every card number 13 digits in a row with at most one space or
        # `-` between two: a body with neither cannot change. The host
        # finds the bodies that might, natively, in one call per batch.
        self.candidates = gl.Regex(r"[A-Za-z0-9._%+-]@|[0-9](?:[ -]?[0-9]){12}")

    def mask(self, s):
        count = 0
        out = []
        frm = 0
        i = s.find(b"@")
        while i >= 0:
            found = email_at(s, i)
            if found is not None and found[0] >= frm:
                out.append(s[frm : found[0]])
                out.append(self.email)
                frm = found[1]
                count += 1
                i = s.find(b"@", frm)
            else:
                i = s.find(b"@", i + 1)
        out.append(s[frm:])
        s = b"".join(out)
        out = []
        frm = 0
        for m in CARD.finditer(s):
            end = m.end()
            # 13 digits need at least 13 bytes.
            if end - m.start() < 13 or (end < len(s) and s[end] in ALNUM):
                continue
            digits = bytes(c for c in m.group() if 48 <= c <= 57)
            if 13 <= len(digits) <= 19 and luhn(digits):
                out.append(s[frm : m.start()])
                out.append(self.card)
                frm = end
                count += 1
        out.append(s[frm:])
        return b"".join(out), count

    def process(self, batch):
        out = batch.rewrite()
        counts = {}
        for i in self.candidates.matching(batch):
            body, count = self.mask(batch.body(i))
            if count:
                out.set_body(i, body)
                counts[i] = str(count)
        out.add_field("redactions", counts, default="0")
        return out


WitWorld = gl.export_processor(Mask)
