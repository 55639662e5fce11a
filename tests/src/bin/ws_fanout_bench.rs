//! `ws-fanout-bench`: WebSocket fan-out of the HTTP gateway. One `rossipd`
//! on loopback with `--http 127.0.0.1:0`, N WebSocket clients following
//! messages (as the web chat), one sender on the JSON-RPC socket; prints the
//! latency from `send` to each client, deliveries (all must arrive, once),
//! the daemon's memory and CPU, then the same with one client that stops
//! reading (see [`rossip_tests::ws_fanout_bench`]). Needs no root; only
//! loopback; the daemons stop (by PID) with their temp dirs on every exit
//! path, Ctrl-C included.
//!
//! ```text
//! cargo build --release -p rossipd -p rossipctl -p rossip-tests
//! target/release/ws-fanout-bench [--clients 100] [--rate 1000] [--secs 10]
//! ```

use std::process::ExitCode;
use std::time::Duration;

use rossip_tests::ws_fanout_bench::{self, Options};
use rossip_tests::{bench, bins};

const USAGE: &str = "\
usage: ws-fanout-bench [--clients 100] [--rate 1000] [--secs 10] [--window 256]
                       [--slow-reader on|off] [--slow-recv-buffer 131072] [--catch-up-secs 30]
                       [--drain-secs 60] [--settle-secs 3] [--client-threads 1]
                       [--history N] [--log-level info]

  --clients N           WebSocket clients reading every message          [default: 100]
  --rate R              messages/s the sender offers (200-byte texts)    [default: 1000]
  --secs T              how long it sends                                [default: 10]
  --window W            unanswered sends: 1 = sequential calls           [default: 256]
  --slow-reader on|off  a second phase with one client that stalls       [default: on]
  --slow-recv-buffer B  the slow client's SO_RCVBUF, bytes               [default: 131072]
  --catch-up-secs S     how long the slow client may take to catch up    [default: 30]
  --drain-secs S        how long the clients may take after the last send [default: 60]
  --settle-secs S       the daemon settles this long before `after`      [default: 3]
  --client-threads N    worker threads of the clients' runtime           [default: 1]
  --history N           the daemon's --history (messages kept); below    [default: rossipd's]
                        --rate × --secs the slow client falls out of it
  --log-level L         the daemon's --log-level                         [default: info]

Exit status: 0 when every accepted message reached every client exactly once
(and the slow client got or was told of each), 1 otherwise, 2 on a usage
error. Needs a rossipd of the same profile with the HTTP gateway:
cargo build --release -p rossipd";

fn main() -> ExitCode {
    let options = match bench::start(
        "ws-fanout-bench",
        USAGE,
        parse(std::env::args().skip(1)),
        bins::rossipd_built,
    ) {
        Ok(options) => options,
        Err(code) => return code,
    };
    println!("{}", header(&options));
    let reports = ws_fanout_bench::measure(&options);
    print!("{}", ws_fanout_bench::table(&reports, &options));
    if bench::interrupted() {
        eprintln!("ws-fanout-bench: interrupted; the daemons were stopped");
        ExitCode::from(130)
    } else if !reports.is_empty() && reports.iter().all(|r| r.complete()) {
        ExitCode::SUCCESS
    } else {
        eprintln!("ws-fanout-bench: deliveries were missing or duplicated, or a phase failed");
        ExitCode::FAILURE
    }
}

/// `Ok(None)` for `--help`.
fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        clients: 100,
        rate: 1000.0,
        secs: 10.0,
        window: 256,
        slow_reader: true,
        // Small against the run (~5 MB of frames), so the stall reaches the
        // gateway instead of filling the client's own buffer.
        slow_recv_buffer: 128 * 1024,
        catch_up: Duration::from_secs(30),
        drain: Duration::from_secs(60),
        settle: Duration::from_secs(3),
        client_threads: 1,
        history: None,
        log_level: "info".to_owned(),
    };
    let mut help = false;
    bench::each_flag(args, |flag, value| {
        fn number<T: std::str::FromStr>(flag: &str, text: String) -> Result<T, String>
        where
            T::Err: std::fmt::Display,
        {
            text.parse().map_err(|e| format!("{flag}: {e}"))
        }
        let secs = |flag: &str, text: String| -> Result<Duration, String> {
            Duration::try_from_secs_f64(number(flag, text)?).map_err(|e| format!("{flag}: {e}"))
        };
        match flag {
            "-h" | "--help" => help = true,
            "--clients" => options.clients = number(flag, value()?)?,
            "--rate" => options.rate = number(flag, value()?)?,
            "--secs" => options.secs = number(flag, value()?)?,
            "--window" => options.window = number(flag, value()?)?,
            "--slow-reader" => {
                options.slow_reader = match value()?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("--slow-reader: on or off, not {other:?}")),
                }
            }
            "--slow-recv-buffer" => options.slow_recv_buffer = number(flag, value()?)?,
            "--catch-up-secs" => options.catch_up = secs(flag, value()?)?,
            "--drain-secs" => options.drain = secs(flag, value()?)?,
            "--settle-secs" => options.settle = secs(flag, value()?)?,
            "--client-threads" => options.client_threads = number(flag, value()?)?,
            "--history" => options.history = Some(number(flag, value()?)?),
            "--log-level" => options.log_level = value()?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
        Ok(())
    })?;
    if help {
        return Ok(None);
    }
    if options.clients == 0 || options.rate <= 0.0 || options.secs <= 0.0 {
        return Err("--clients, --rate and --secs must be above 0".to_owned());
    }
    Ok(Some(options))
}

fn header(options: &Options) -> String {
    format!(
        "rossip WebSocket fan-out benchmark\n\
         rossipd: {} ({}, {} build); --log-level {}; {} clients, {} msg/s for {} s; {} CPUs\n",
        bins::rossipd().display(),
        bins::rossipd_version(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        options.log_level,
        options.clients,
        options.rate,
        options.secs,
        std::thread::available_parallelism().map_or(0, usize::from)
    )
}
