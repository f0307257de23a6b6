//! How far a running attempt has read its input: bytes and lines, counted
//! as the executor reads them, for the progress the agent reports about
//! once a second (`service.rs`), so a long task's bar moves before it ends.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Meter {
    bytes: AtomicU64,
    lines: AtomicU64,
}

impl Meter {
    /// Bytes and lines read so far.
    pub fn read(&self) -> (u64, u64) {
        (self.bytes.load(Ordering::Relaxed), self.lines.load(Ordering::Relaxed))
    }
}

/// A reader that counts what passes through it into a [`Meter`].
pub(super) struct Metered<R> {
    inner: R,
    meter: Arc<Meter>,
}

impl<R> Metered<R> {
    pub(super) fn new(inner: R, meter: Arc<Meter>) -> Self {
        Metered { inner, meter }
    }

    pub(super) fn get_ref(&self) -> &R {
        &self.inner
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let lines = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        self.meter.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.meter.lines.fetch_add(lines, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_read_through_it_is_counted_as_it_goes() {
        let meter = Arc::new(Meter::default());
        let mut r = Metered::new(&b"one\ntwo\nthree"[..], meter.clone());
        let mut buf = [0u8; 5];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(meter.read(), (5, 1));
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(meter.read(), (13, 2));
    }
}
