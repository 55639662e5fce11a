//! Newline-delimited framing with a length cap that survives bad lines.
//!
//! tokio-util's `LinesCodec` ends the stream on invalid UTF-8, and any codec
//! error ends a `FramedRead`; the API promises the connection survives an
//! error, so lines are read as bytes here and a line over the cap is skipped
//! to its newline and reported, after which reading goes on.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One framed line.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its `\n` (and without a trailing `\r`).
    Complete(Vec<u8>),
    /// A line longer than the cap; its bytes were discarded.
    TooLong {
        /// How many bytes it had (at least the cap).
        len: usize,
    },
}

/// Reads [`Line`]s from a buffered reader.
///
/// [`LineReader::next_line`] is cancel-safe: the part of a line read so far
/// is kept in the reader, so a connection may race reading against other
/// work (answers of pipelined requests) without losing bytes.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    max: usize,
    /// The current line's bytes so far (emptied once it is over the cap).
    line: Vec<u8>,
    /// The current line's length so far.
    len: usize,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// `max` is the longest line accepted, in bytes, excluding the newline.
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            max,
            line: Vec::new(),
            len: 0,
        }
    }

    /// The next line, or `None` at end of stream. A final line without a
    /// newline is returned as complete (a client may close after writing).
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            // The only await; everything after it runs to the next loop
            // without yielding, and state lives in `self`: cancel-safe.
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                let len = std::mem::take(&mut self.len);
                let line = std::mem::take(&mut self.line);
                return Ok(match len {
                    0 => None,
                    n if n > self.max => Some(Line::TooLong { len: n }),
                    _ => Some(Line::Complete(trim_cr(line))),
                });
            }
            let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            self.len = self.len.saturating_add(take);
            if self.len <= self.max {
                self.line.extend_from_slice(&chunk[..take]);
            } else {
                // Over the cap: stop buffering, keep counting to the newline.
                self.line = Vec::new();
            }
            let consumed = if done { take + 1 } else { take };
            self.inner.consume(consumed);
            if done {
                let len = std::mem::take(&mut self.len);
                let line = std::mem::take(&mut self.line);
                return Ok(Some(if len > self.max {
                    Line::TooLong { len }
                } else {
                    Line::Complete(trim_cr(line))
                }));
            }
        }
    }
}

fn trim_cr(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn lines(input: &[u8], max: usize) -> Vec<Line> {
        // A tiny buffer exercises lines that span several reads.
        let mut reader = LineReader::new(BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.expect("read") {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn a_read_cancelled_mid_line_loses_nothing() {
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = tokio::io::duplex(64);
        let mut reader = LineReader::new(BufReader::with_capacity(4, server), 64);
        client.write_all(b"{\"half").await.expect("write");
        let cancelled =
            tokio::time::timeout(std::time::Duration::from_millis(20), reader.next_line()).await;
        assert!(cancelled.is_err(), "no whole line yet");
        client.write_all(b"\":1}\nnext\n").await.expect("write");
        let first = reader.next_line().await.expect("read");
        assert_eq!(first, Some(Line::Complete(b"{\"half\":1}".to_vec())));
        let second = reader.next_line().await.expect("read");
        assert_eq!(second, Some(Line::Complete(b"next".to_vec())));
    }

    #[tokio::test]
    async fn splits_lines_and_survives_long_ones() {
        let got = lines(b"ab\r\nthis-is-too-long\ncd\nlast", 8).await;
        assert_eq!(
            got,
            vec![
                Line::Complete(b"ab".to_vec()),
                Line::TooLong { len: 16 },
                Line::Complete(b"cd".to_vec()),
                Line::Complete(b"last".to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn empty_lines_and_invalid_utf8_are_lines_too() {
        let got = lines(b"\n\xff\xfe\n", 8).await;
        assert_eq!(
            got,
            vec![Line::Complete(vec![]), Line::Complete(vec![0xff, 0xfe])]
        );
    }
}
