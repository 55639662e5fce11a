//! Writing results: stdout is data, stderr is diagnostics.
//!
//! Every stdout write goes through [`Out`], which turns a closed pipe (`rossipctl tail -f |
//! head -1`) into [`StdoutClosed`], so `main` can exit 0 quietly instead of panicking the
//! way `println!` does.

use std::fmt::Display;
use std::io::{self, Write};

use anyhow::Context as _;
use serde::Serialize;

/// The reader of stdout went away. Not a failure: the user got what they wanted.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct StdoutClosed;

/// Line-oriented stdout (or any writer, in tests).
#[derive(Debug)]
pub struct Out<W: Write> {
    writer: W,
}

impl<W: Write> Out<W> {
    /// Wraps a writer, usually a locked stdout.
    pub fn new(writer: W) -> Self {
        Out { writer }
    }

    /// Writes `text` and a newline, and flushes so `tail -f` lines appear at once.
    pub fn line(&mut self, text: &str) -> anyhow::Result<()> {
        self.bytes(text.as_bytes())?;
        self.bytes(b"\n")?;
        self.flush()
    }

    /// Writes `value` as compact JSON on one line.
    pub fn json(&mut self, value: &impl Serialize) -> anyhow::Result<()> {
        let text = serde_json::to_string(value).context("cannot encode the output as JSON")?;
        self.line(&text)
    }

    /// Prints a listing: with `json`, one object a line; else the lines of
    /// `table`, or, with nothing to list, `empty` on stderr, so that stdout
    /// stays empty and `rossipctl … | wc -l` counts the items.
    pub fn listing<T: Serialize>(
        &mut self,
        json: bool,
        items: &[T],
        empty: &str,
        table: impl FnOnce(&[T]) -> Vec<String>,
    ) -> anyhow::Result<()> {
        if json {
            for item in items {
                self.json(item)?;
            }
        } else if items.is_empty() {
            note(empty);
        } else {
            for line in table(items) {
                self.line(&line)?;
            }
        }
        Ok(())
    }

    /// Writes raw bytes (e.g. a completion script), unflushed.
    pub fn bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.writer.write_all(bytes).map_err(write_error)
    }

    /// Flushes what [`Out::bytes`] wrote.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.writer.flush().map_err(write_error)
    }

    /// The writer, for tests to inspect.
    #[cfg(test)]
    pub fn get_ref(&self) -> &W {
        &self.writer
    }
}

/// A table's lines: `header` first, then `rows`, each column padded to its
/// widest cell plus two spaces (the last one not padded), trailing blanks
/// trimmed (a row whose last cells are empty).
pub fn aligned<const N: usize>(header: [&str; N], rows: Vec<[String; N]>) -> Vec<String> {
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    std::iter::once(header.map(str::to_owned))
        .chain(rows)
        .map(|row| {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                line.push_str(cell);
                if i + 1 < N {
                    let pad = width - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            line.truncate(line.trim_end().len());
            line
        })
        .collect()
}

fn write_error(error: io::Error) -> anyhow::Error {
    if error.kind() == io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(error).context("cannot write to stdout")
    }
}

/// Prints a plain note for the human on stderr (e.g. `no peers`), keeping stdout empty.
pub fn note(message: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{message}");
}

/// Prints `rossipctl: warning: MESSAGE` on stderr. A failing stderr is ignored: there is
/// nowhere left to report it.
pub fn warn(message: impl Display) {
    let _ = writeln!(io::stderr().lock(), "rossipctl: warning: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader has gone.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn closed_pipe_is_reported_as_stdout_closed() {
        let err = Out::new(ClosedPipe).line("x").expect_err("write must fail");
        assert!(err.downcast_ref::<StdoutClosed>().is_some(), "{err:#}");
    }

    #[test]
    fn json_is_one_line() {
        let mut out = Out::new(Vec::new());
        out.json(&serde_json::json!({"text": "a\nb\u{1b}"}))
            .expect("write to Vec");
        assert_eq!(out.get_ref().as_slice(), b"{\"text\":\"a\\nb\\u001b\"}\n");
    }
}
