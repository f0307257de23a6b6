//! CIDs as the store needs them: building CIDv1 from a sha2-256 digest,
//! printing them (multibase base32, lowercase, `b` prefix, as kubo prints
//! `--cid-version=1`), and parsing what a client sends (base32 either case,
//! base58btc `z...`, base16 `f...`, CIDv0 `Qm...`) into one normal form so
//! the index has a single key per object.
//!
//! Also owns the unsigned varint and the base58btc text codec (the peer ID
//! of `/api/v0/id` is base58btc). Everything here is pure and small; the
//! DAG layout lives in `importer.rs`.

use std::fmt;

/// Multicodec of a raw block (a leaf of `ipfs add --cid-version=1`).
pub const RAW: u64 = 0x55;
/// Multicodec of a dag-pb block (an internal node of a UnixFS file).
pub const DAG_PB: u64 = 0x70;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

/// A CID in binary form, always CIDv1 (a CIDv0 is converted on parsing: it
/// is the same dag-pb sha2-256 object).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Cid(Vec<u8>);

/// Why a string is not a CID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidError(pub String);

impl fmt::Display for CidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Cid {
    /// CIDv1 of `codec` over a sha2-256 `digest`.
    pub fn v1_sha256(codec: u64, digest: &[u8]) -> Cid {
        let mut b = Vec::with_capacity(4 + digest.len());
        put_varint(&mut b, 1);
        put_varint(&mut b, codec);
        put_varint(&mut b, SHA2_256);
        put_varint(&mut b, digest.len() as u64);
        b.extend_from_slice(digest);
        Cid(b)
    }

    /// The binary CID (what dag-pb links of a CIDv1 DAG hold).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The CIDv0 form (the bare sha2-256 multihash, what links of a CIDv0
    /// DAG hold), for a dag-pb CID; None for any other.
    pub fn v0_bytes(&self) -> Option<&[u8]> {
        let b = &self.0;
        (b.len() == 36 && b[..4] == [0x01, DAG_PB as u8, SHA2_256 as u8, 0x20]).then(|| &b[2..])
    }

    /// The CIDv0 text (`Qm...`), for a dag-pb CID; None for any other.
    pub fn to_v0_string(&self) -> Option<String> {
        self.v0_bytes().map(base58_encode)
    }

    /// Parses a CID in any of the supported text forms.
    pub fn parse(s: &str) -> Result<Cid, CidError> {
        let bad = |why: &str| CidError(format!("invalid cid {s:?}: {why}"));
        if s.len() == 46 && s.starts_with("Qm") {
            let mh = base58_decode(s).ok_or_else(|| bad("not base58"))?;
            if mh.len() != 34 || mh[0] != 0x12 || mh[1] != 0x20 {
                return Err(bad("CIDv0 is not a sha2-256 multihash"));
            }
            return Ok(Cid::v1_sha256(DAG_PB, &mh[2..]));
        }
        let mut chars = s.chars();
        let prefix = chars.next().ok_or_else(|| bad("empty"))?;
        let rest = chars.as_str();
        let bytes = match prefix {
            'b' | 'B' => base32_decode(rest),
            'z' => base58_decode(rest),
            'f' | 'F' => base16_decode(rest),
            _ => return Err(bad("unsupported multibase prefix")),
        }
        .ok_or_else(|| bad("bad multibase encoding"))?;
        Cid::from_bytes(&bytes).map_err(|e| bad(&e))
    }

    /// A binary CID, v1 or v0 (a bare sha2-256 multihash, as in the links
    /// of a CIDv0 DAG).
    pub(crate) fn from_bytes(b: &[u8]) -> Result<Cid, String> {
        if b.len() == 34 && b[..2] == [SHA2_256 as u8, 0x20] {
            return Ok(Cid::v1_sha256(DAG_PB, &b[2..]));
        }
        let (version, n1) = read_varint(b).ok_or("truncated version")?;
        if version != 1 {
            return Err(format!("unsupported CID version {version}"));
        }
        let (_codec, n2) = read_varint(&b[n1..]).ok_or("truncated codec")?;
        let (_hash, n3) = read_varint(&b[n1 + n2..]).ok_or("truncated multihash code")?;
        let (len, n4) = read_varint(&b[n1 + n2 + n3..]).ok_or("truncated digest length")?;
        let digest_at = n1 + n2 + n3 + n4;
        if (b.len() - digest_at) as u64 != len {
            return Err("digest length does not match".into());
        }
        Ok(Cid(b.to_vec()))
    }
}

impl fmt::Display for Cid {
    /// Multibase base32 lowercase without padding, prefixed with `b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("b")?;
        f.write_str(&base32_encode(&self.0))
    }
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned varint; returns the value and the bytes it used.
pub fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &byte in data {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(B32[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(B32[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c.to_ascii_lowercase() {
            c @ b'a'..=b'z' => c - b'a',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn base16_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

const B58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// base58btc (Bitcoin alphabet), as peer IDs and CIDv0 are written.
pub fn base58_encode(data: &[u8]) -> String {
    let zeros = data.iter().take_while(|&&b| b == 0).count();
    // Little-endian base-58 digits of the big-endian number `data`.
    let mut digits: Vec<u8> = Vec::with_capacity(data.len() * 138 / 100 + 1);
    for &byte in &data[zeros..] {
        let mut carry = u32::from(byte);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut out = String::with_capacity(zeros + digits.len());
    out.extend(std::iter::repeat_n('1', zeros));
    out.extend(digits.iter().rev().map(|&d| B58[d as usize] as char));
    out
}

fn base58_decode(s: &str) -> Option<Vec<u8>> {
    let zeros = s.bytes().take_while(|&c| c == b'1').count();
    // Little-endian base-256 bytes of the number.
    let mut bytes: Vec<u8> = Vec::with_capacity(s.len());
    for c in s.bytes().skip(zeros) {
        let mut carry = B58.iter().position(|&a| a == c)? as u32;
        for b in bytes.iter_mut() {
            carry += u32::from(*b) * 58;
            *b = carry as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push(carry as u8);
            carry >>= 8;
        }
    }
    let mut out = vec![0u8; zeros];
    out.extend(bytes.iter().rev());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am";

    #[test]
    fn varint_round_trips_across_byte_boundaries() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(read_varint(&b), Some((v, b.len())), "{v}");
        }
        let mut b = Vec::new();
        put_varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
    }

    #[test]
    fn base32_cid_parses_and_prints_back_unchanged() {
        let cid = Cid::parse(HELLO).unwrap();
        assert_eq!(cid.to_string(), HELLO);
        assert_eq!(&cid.as_bytes()[..4], &[0x01, 0x55, 0x12, 0x20]);
        assert_eq!(Cid::parse(&HELLO.to_uppercase()).unwrap(), cid);
    }

    #[test]
    fn base58_and_base16_forms_of_a_cid_normalise_to_base32() {
        let cid = Cid::parse(HELLO).unwrap();
        let z = format!("z{}", base58_encode(cid.as_bytes()));
        assert_eq!(Cid::parse(&z).unwrap(), cid);
        let f: String = cid.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Cid::parse(&format!("f{f}")).unwrap(), cid);
    }

    #[test]
    fn cidv0_becomes_the_dag_pb_cidv1_with_the_same_digest() {
        // Known pair: kubo's `ipfs cid format -v 1` of the empty directory.
        let v0 = Cid::parse("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn").unwrap();
        assert_eq!(v0.to_string(), "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354");
    }

    #[test]
    fn malformed_cids_are_rejected() {
        for s in ["", "hello", "b", "bafy!!", "Qm123", "bafkreicysg23", "x1234"] {
            assert!(Cid::parse(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn base58_round_trips_with_leading_zeros() {
        for data in [&[][..], &[0, 0, 1, 2, 255][..], &[0x12, 0x20, 7, 9][..]] {
            assert_eq!(base58_decode(&base58_encode(data)).unwrap(), data);
        }
        assert_eq!(base58_encode(b"hello world"), "StV1DL6CwTryKyV");
    }
}
