"""The masking processor (examples/mask/README.md) with the Python SDK:
emails and card numbers are replaced, and a `redactions` field is added."""

import re

import gleaner_sdk as gl

LOCAL = re.compile(rb"[A-Za-z0-9._%+-]+\Z")
DOMAIN = re.compile(rb"[A-Za-z0-9.-]+")
CARD = re.compile(rb"(?<![A-Za-z0-9])[0-9](?:[ -]?[0-9])*")
ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def email_at(s, at):
    """(start, end) of the email whose `@` is at `at`, or None."""
    m = LOCAL.search(s, 0, at)
    if m is None:
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
    return m.start(), r


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
            if end < len(s) and s[end] in ALNUM:
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
        out = batch.builder()
        redactions = out.key("redactions")
        for e in batch:
            body, count = self.mask(e.body)
            out.push(e.timestamp, body, e.fields)
            out.field(redactions, str(count))
        return out


WitWorld = gl.export_processor(Mask)
