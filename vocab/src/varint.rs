//! Compact binary records: unsigned integers as LEB128 varints (7 bits a byte, the high bit
//! set on all but the last), texts as a varint length and UTF-8 bytes. What the node writes
//! once per request — the usage spool's records, SQLite's request-log segments — is written
//! this way: a few bytes a number, no text formatting or escaping to produce or parse.

/// Appends `v`.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `s`: its length, then its bytes.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The bits of a record's flags that are set: `bits` pairs each condition with its bit.
pub fn flags(bits: &[(bool, u64)]) -> u64 {
    bits.iter()
        .filter(|(set, _)| *set)
        .fold(0, |acc, (_, bit)| acc | bit)
}

/// `v` as an unsigned number that is small when `v` is near zero, either side.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads what [`put`] and [`put_str`] wrote, front to back; `None` for bytes that end early
/// or do not hold what is asked (a varint longer than ten bytes, a text that is not UTF-8).
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    /// What is left to read.
    pub bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for (i, &b) in self.bytes.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.bytes = &self.bytes[i + 1..];
                return Some(v);
            }
        }
        None
    }

    /// `n` bytes.
    pub fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok().filter(|n| *n <= self.bytes.len())?;
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(taken)
    }

    /// A text's bytes, as [`put_str`] wrote them, not yet checked to be UTF-8.
    pub fn text_bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.varint()?;
        self.take(len)
    }

    pub fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.text_bytes()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_texts_read_back_and_short_input_is_refused() {
        let mut out = Vec::new();
        let numbers = [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX];
        for n in numbers {
            put(&mut out, n);
        }
        put_str(&mut out, "ünïcödé");
        put(&mut out, zigzag(-5));
        put(&mut out, zigzag(i64::MIN));
        let mut r = Reader::new(&out);
        for n in numbers {
            assert_eq!(r.varint(), Some(n));
        }
        assert_eq!(r.str(), Some("ünïcödé"));
        assert_eq!(r.varint().map(unzigzag), Some(-5));
        assert_eq!(r.varint().map(unzigzag), Some(i64::MIN));
        assert!(r.bytes.is_empty());
        assert_eq!(r.varint(), None);
        for cut in 0..out.len() {
            let mut r = Reader::new(&out[..cut]);
            let all = (|| {
                for _ in numbers {
                    r.varint()?;
                }
                r.str()?;
                r.varint()?;
                r.varint()
            })();
            assert_eq!(all, None, "cut at {cut}");
        }
        assert_eq!(Reader::new(&[0xff; 11]).varint(), None);
        assert_eq!(Reader::new(&[2, 0xff, 0xfe]).str(), None);
    }
}
