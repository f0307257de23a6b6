//! A `.zst` input read decompressed: every frame of the file in turn (the
//! `zstd` tool and `pzstd` may write several), each frame's checksum
//! checked when it has one. A file that does not decode is named, with
//! what to do; an error of the source itself (a fetch) passes through
//! unchanged, as it explains itself better.

use std::io::{self, BufRead, BufReader, Read};

use ruzstd::decoding::FrameDecoder;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};

pub(crate) struct ZstdReader<R: Read> {
    source: BufReader<SourceErrors<R>>,
    decoder: FrameDecoder,
    /// A frame is being decoded (its header has been read).
    in_frame: bool,
    /// The file's name as the job gives it, for errors.
    name: String,
}

/// Keeps the source's own error, so that it is not reported as corrupt data.
struct SourceErrors<R> {
    inner: R,
    error: Option<io::Error>,
}

impl<R: Read> Read for SourceErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| self.error = Some(io::Error::new(e.kind(), e.to_string())))
    }
}

impl<R: Read> ZstdReader<R> {
    pub(crate) fn new(source: R, name: &str) -> Self {
        ZstdReader {
            source: BufReader::with_capacity(64 << 10, SourceErrors { inner: source, error: None }),
            decoder: FrameDecoder::new(),
            in_frame: false,
            name: name.to_string(),
        }
    }

    pub(crate) fn get_ref(&self) -> &R {
        &self.source.get_ref().inner
    }

    fn corrupt(&mut self, what: impl std::fmt::Display) -> io::Error {
        if let Some(e) = self.source.get_mut().error.take() {
            return e;
        }
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "input {} is not a valid zstd file ({what}): check the file, or rename it if it is not compressed",
                self.name
            ),
        )
    }

    /// Starts the next frame; false at the end of the file.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => return Ok(true),
                // Skippable frames hold metadata, not data.
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(&mut (&mut self.source).take(u64::from(length)), &mut io::sink())?;
                    if skipped < u64::from(length) {
                        return Err(self.corrupt("a skippable frame is cut short"));
                    }
                }
                Err(e) => return Err(self.corrupt(e)),
            }
        }
    }
}

impl<R: Read> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.next_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            if self.decoder.can_collect() > 0 {
                return self.decoder.read(buf);
            }
            if self.decoder.is_finished() {
                if let (Some(want), Some(got)) =
                    (self.decoder.get_checksum_from_data(), self.decoder.get_calculated_checksum())
                    && want != got
                {
                    return Err(self.corrupt("a frame's checksum does not match its data"));
                }
                self.in_frame = false;
                continue;
            }
            let wanted = buf.len();
            if let Err(e) = self
                .decoder
                .decode_blocks(&mut self.source, ruzstd::decoding::BlockDecodingStrategy::UptoBytes(wanted))
            {
                return Err(self.corrupt(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruzstd::encoding::{CompressionLevel, compress_to_vec};

    fn decode(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ZstdReader::new(data, "in/a.zst").read_to_end(&mut out)?;
        Ok(out)
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n).map(|i| format!("line {i} of {}\n", i * 7919 % 1000)).collect::<String>().into_bytes()
    }

    #[test]
    fn every_frame_of_a_file_is_read_in_order() {
        let (a, b) = (text(50_000), text(3));
        let mut file = compress_to_vec(&a[..], CompressionLevel::Fastest);
        // A skippable frame between the two (magic 0x184D2A50, length 4).
        file.extend_from_slice(&[0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]);
        file.extend(compress_to_vec(&b[..], CompressionLevel::Uncompressed));
        let mut want = a.clone();
        want.extend_from_slice(&b);
        assert_eq!(decode(&file).unwrap(), want);
        assert_eq!(decode(&[]).unwrap(), b"");
    }

    #[test]
    fn a_cut_or_foreign_file_is_named() {
        let file = compress_to_vec(&text(50_000)[..], CompressionLevel::Fastest);
        for bad in [&file[..file.len() / 2], &b"plain text\n"[..]] {
            let e = decode(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().starts_with("input in/a.zst is not a valid zstd file ("), "{e}");
        }
        // A changed byte of stored data decodes, and only the checksum tells.
        let mut file = compress_to_vec(&text(100)[..], CompressionLevel::Uncompressed);
        let middle = file.len() / 2;
        file[middle] ^= 1;
        let e = decode(&file).unwrap_err();
        assert!(e.to_string().contains("checksum does not match"), "{e}");
    }

    #[test]
    fn an_error_of_the_source_is_passed_on_as_it_is() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("IPFS stopped answering"))
            }
        }
        let e = ZstdReader::new(Failing, "in/a.zst").read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(e.to_string(), "IPFS stopped answering");
    }
}
