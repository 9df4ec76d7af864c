//! Zero-copy line and field helpers over `&[u8]` (no `String` per line).

/// Iterator over lines of a byte slice; strips `\n` and a trailing `\r`.
/// Tracks the 1-based line number of the last returned line.
pub(crate) struct Lines<'a> {
    rest: &'a [u8],
    /// Line number of the line last returned (1-based, relative to `base`).
    pub line_no: usize,
}

impl<'a> Lines<'a> {
    /// `first_line` is the 1-based number of the first line in `bytes`.
    pub fn new(bytes: &'a [u8], first_line: usize) -> Self {
        Lines {
            rest: bytes,
            line_no: first_line.saturating_sub(1),
        }
    }
    /// Lines not yet consumed (upper bound, counts `\n`).
    pub fn remaining_lines(&self) -> usize {
        memchr::memchr_iter(b'\n', self.rest).count()
            + usize::from(!self.rest.is_empty() && !self.rest.ends_with(b"\n"))
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match memchr::memchr(b'\n', self.rest) {
            Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
            None => (self.rest, &self.rest[self.rest.len()..]),
        };
        self.rest = rest;
        self.line_no += 1;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

/// Bytes `start..end` of a fixed-width line, clamped to its length, trimmed.
pub(crate) fn field(line: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(line.len());
    if start >= end {
        return &[];
    }
    trim(&line[start..end])
}

/// Trim ASCII whitespace on both sides.
pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Parse a (possibly signed) decimal integer; empty -> `None`.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    let s = trim(s);
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(if neg { -v } else { v })
}

/// Parse a floating point number (no allocation).
pub(crate) fn parse_f64(s: &[u8]) -> Option<f64> {
    let s = trim(s);
    if s.is_empty() {
        return None;
    }
    if let Some(v) = parse_plain_decimal(s) {
        return Some(v);
    }
    let v: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    v.is_finite().then_some(v)
}

/// Exact powers of ten representable in f64.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Fast path for `[+-]digits[.digits]` with at most 15 digits (the form of
/// every coordinate in a mol block): the digits form an integer below 2⁵³
/// and the divisor a power of ten that f64 holds exactly, so one IEEE
/// division gives the correctly rounded value, the same as `str::parse`.
/// `None` for anything else (the caller falls back to `str::parse`).
fn parse_plain_decimal(s: &[u8]) -> Option<f64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    let mut mant: u64 = 0;
    let (mut n_digits, mut n_frac, mut dot) = (0usize, 0usize, false);
    for &c in digits {
        if c.is_ascii_digit() {
            mant = mant * 10 + u64::from(c - b'0');
            n_digits += 1;
            n_frac += usize::from(dot);
            if n_digits > 15 {
                return None;
            }
        } else if c == b'.' && !dot {
            dot = true;
        } else {
            return None;
        }
    }
    if n_digits == 0 {
        return None;
    }
    let v = mant as f64 / POW10[n_frac];
    Some(if neg { -v } else { v })
}

/// Lossy, trimmed-at-end text for error messages (max 60 chars).
pub(crate) fn show(s: &[u8]) -> String {
    let t = String::from_utf8_lossy(s);
    let t = t.trim_end();
    if t.chars().count() > 60 {
        format!("{}…", t.chars().take(60).collect::<String>())
    } else {
        t.to_string()
    }
}

/// Whitespace-separated tokens.
pub(crate) fn tokens(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|c| c.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn lines_and_fields() {
        let mut l = Lines::new(b"a\r\nbb\n\nc", 10);
        assert_eq!(l.remaining_lines(), 4);
        assert_eq!(l.next(), Some(&b"a"[..]));
        assert_eq!(l.line_no, 10);
        assert_eq!(l.next(), Some(&b"bb"[..]));
        assert_eq!(l.next(), Some(&b""[..]));
        assert_eq!(l.next(), Some(&b"c"[..]));
        assert_eq!(l.line_no, 13);
        assert_eq!(l.next(), None);
        assert_eq!(field(b"  12  3", 0, 4), b"12");
        assert_eq!(field(b"ab", 5, 9), b"");
        assert_eq!(parse_i64(b" -12 "), Some(-12));
        assert_eq!(parse_i64(b"1x"), None);
        assert_eq!(parse_f64(b"  -1.5000"), Some(-1.5));
        assert_eq!(parse_f64(b"abc"), None);
        assert_eq!(parse_f64(b"nan"), None);
    }

    #[test]
    fn plain_decimal_fast_path_equals_str_parse() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let fixed = [
            "0",
            "-0.0000",
            "+1.5",
            "5.",
            ".5",
            "-.25",
            "123456789012345",
            "0.1",
            "-2.7182818284590",
            "9999.9999",
            "1e3",
            "1.2.3",
            "-",
            ".",
            "1-2",
            "1234567890123456",
        ];
        let mut cases: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
        for _ in 0..20_000 {
            let int: u64 = rng.random_range(0..100_000);
            let frac_digits = rng.random_range(0..11);
            let frac: u64 = rng.random_range(0..10u64.pow(frac_digits));
            let sign = ["", "-", "+"][rng.random_range(0..3)];
            cases.push(if frac_digits == 0 {
                format!("{sign}{int}")
            } else {
                format!("{sign}{int}.{frac:0w$}", w = frac_digits as usize)
            });
        }
        for c in &cases {
            let want = c.parse::<f64>().ok().filter(|v| v.is_finite());
            let got = parse_f64(c.as_bytes());
            assert_eq!(
                got.map(f64::to_bits),
                want.map(f64::to_bits),
                "'{c}': {got:?} vs {want:?}"
            );
        }
    }
}
