//! The terminal while the chat runs: raw mode and the alternate screen, given back however
//! the chat ends (a return, an error, a panic, a signal), and the terminal's input as
//! events of the chat loop.

use std::io::{self, Write as _};
use std::sync::mpsc::Sender;
use std::thread;

use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, DisableBracketedPaste, EnableBracketedPaste, Event};
use ratatui::crossterm::execute;

/// Holds the terminal in chat mode; dropping it restores the terminal.
#[derive(Debug)]
pub struct TerminalGuard {
    terminal: DefaultTerminal,
}

impl TerminalGuard {
    /// Enters raw mode and the alternate screen. A panic anywhere after this restores the
    /// terminal (ratatui's hook) and ends the process: the chat's threads cannot go on
    /// drawing on a terminal given back.
    pub fn enter() -> io::Result<TerminalGuard> {
        let terminal = ratatui::try_init()?;
        let restore_then = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_then(info);
            std::process::exit(101);
        }));
        // Pasted text arrives as one event, not as keys (a pasted newline does not send).
        execute!(io::stdout(), EnableBracketedPaste)?;
        Ok(TerminalGuard { terminal })
    }

    /// The terminal to draw on.
    pub fn terminal(&mut self) -> &mut DefaultTerminal {
        &mut self.terminal
    }

    /// Rings the terminal bell.
    pub fn bell(&mut self) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        stdout.write_all(b"\x07")?;
        stdout.flush()
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        let _ = execute!(io::stdout(), DisableBracketedPaste);
        ratatui::restore();
    }
}

/// Reads the terminal's events on a thread of their own, handing each to `send` until it
/// returns false or the terminal fails (then `failed` says why).
pub fn spawn_reader<T: Send + 'static>(
    tx: Sender<T>,
    wrap: fn(Event) -> T,
    failed: fn(String) -> T,
) -> io::Result<()> {
    thread::Builder::new()
        .name("terminal".into())
        .spawn(move || {
            loop {
                match event::read() {
                    Ok(event) => {
                        if tx.send(wrap(event)).is_err() {
                            return;
                        }
                    }
                    Err(err) => {
                        let _ = tx.send(failed(err.to_string()));
                        return;
                    }
                }
            }
        })
        .map(|_| ())
}

/// Turns SIGTERM, SIGINT and SIGHUP into events of the chat loop (which restores the
/// terminal and exits), instead of ending the process with the terminal in raw mode.
pub fn spawn_signal_watch<T: Send + 'static>(tx: Sender<T>, wrap: fn(i32) -> T) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if tx.send(wrap(signal)).is_err() {
                    return;
                }
            }
        })
        .map(|_| ())
}
