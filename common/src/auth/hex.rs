//! Strict hex and decimal for the envelope and key files: one spelling per
//! value, so no byte can change without failing to parse.

pub(super) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Lowercase hex only, exactly `2 * out.len()` digits.
pub(super) fn decode_hex(s: &[u8], out: &mut [u8]) -> Option<()> {
    if s.len() != 2 * out.len() {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
    }
    Some(())
}

pub(super) fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Canonical decimal `u64`: digits only, no leading zero except "0".
pub(super) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d < 10)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_value() {
        let mut out = [0u8; 2];
        assert_eq!(decode_hex(b"0aff", &mut out), Some(()));
        assert_eq!(out, [0x0a, 0xff]);
        for bad in [&b"0AFF"[..], b"0af", b"0aff0", b"0ag0"] {
            assert_eq!(decode_hex(bad, &mut out), None, "{bad:?}");
        }
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        for bad in [&b""[..], b"01", b"-1", b"+1", b"1.5", b"18446744073709551616", b"\xd9\xa1"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }
}
