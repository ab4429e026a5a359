"""Text from the site made safe for what reads it, without changing what it says.

- A spreadsheet runs a CSV cell that starts like a formula (``=HYPERLINK(…)``, ``+SUM(…)``,
  ``-2+3``, ``@cmd``, or a tab or carriage return before one). ``csv_cell`` neutralises such a
  cell the way OWASP's "CSV Injection" page recommends: a single quote before it, so the
  cell is shown as the text it is. Only CSV gets this; JSON, NDJSON and SQLite keep the text
  exactly as published.
- A terminal obeys escape sequences (a screen clear, an OSC-8 hyperlink) and bidirectional
  overrides (U+202E shows text reversed). ``for_terminal`` shows each such character as its
  escape (``\\x1b``, ``\\u202e``), so what is printed is what the archive holds.
"""

from __future__ import annotations

CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_RULE = (
    "a text cell that begins with =, +, -, @, a tab or a carriage return is written with a "
    "single quote (') before it, so that a spreadsheet shows it as text instead of running it "
    "as a formula (OWASP, CSV Injection); JSON, NDJSON and the SQLite file hold the text "
    "exactly as published"
)

# C0 and C1 controls but newline, DEL, and the Unicode bidirectional controls (marks,
# embeddings, overrides, isolates).
_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
TERMINAL = str.maketrans(
    {
        **{c: f"\\x{c:02x}" for c in (*range(0x00, 0x20), *range(0x7F, 0xA0)) if c != 0x0A},
        **{c: f"\\u{c:04x}" for c in _BIDI},
    }
)


def csv_cell(value):
    """``value`` as a CSV cell a spreadsheet will not run: see CSV_RULE. Not text: as it is."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA_STARTS):
        return "'" + value
    return value


def for_terminal(text: str) -> str:
    """``text`` with every control, escape and bidirectional-override character but newline
    shown as its escape."""
    return text.translate(TERMINAL)
