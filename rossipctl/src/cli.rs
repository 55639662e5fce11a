//! Command-line syntax (clap derive). Parsing only; the commands live in `commands/`.

use std::path::PathBuf;

use clap::{Args, CommandFactory as _, Parser, Subcommand};
use rossip_proto::message::validate_channel;
use rossip_proto::paths::SOCKET_ENV;
use rossip_proto::rpc::Since;

use crate::timefmt;

/// Talk to the local rossipd: send and read messages, list peers, show status.
#[derive(Debug, Parser)]
#[command(name = "rossipctl", version, max_term_width = 100)]
#[command(
    after_help = "Exit status: 0 ok; 1 rossipd answered with an error (or another \
                        failure); 2 usage error; 69 rossipd not reachable; 77 permission \
                        denied on the socket."
)]
pub struct Cli {
    /// rossipd's socket [default: $ROSSIP_SOCKET if set, else the first of these that a
    /// rossipd of this user, root or the system service answers on:
    /// $XDG_RUNTIME_DIR/rossip/rossipd.sock (if XDG_RUNTIME_DIR is set),
    /// /run/user/UID/rossip/rossipd.sock, /tmp/rossip-UID/rossipd.sock,
    /// /run/rossip/rossipd.sock (the system service)]
    // Not clap's `env`: that would turn an empty ROSSIP_SOCKET into a usage error, where
    // an empty variable conventionally means unset. See `Cli::socket_override`.
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Print one JSON object per line instead of text for humans
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a message to everyone on the LAN
    Send(SendArgs),
    /// Show recent messages, and with -f, follow new ones
    Tail(TailArgs),
    /// List the other members of the cluster
    Peers(PeersArgs),
    /// Print membership changes (joined, failed, left, …) as they happen
    Events(EventsArgs),
    /// Show this node's identity, addresses and counters
    Status,
    /// Contact a node by address (for networks without multicast)
    Join(JoinArgs),
    /// Leave the cluster gracefully; rossipd shuts down afterwards
    Leave,
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Print the rossipctl(1) manual page, or write every page into a directory
    Man(ManArgs),
    /// Make a new random cluster key (for rossipd --key-file): print it, or with -o write
    /// it to a file only its owner can read
    Keygen(KeygenArgs),
    /// List or rotate the cluster keys of every member (install, use, remove)
    #[command(subcommand)]
    Keys(KeysCommand),
    /// List the channels this node holds messages of, the most recently active first
    Channels,
    /// Show, set or clear your display name, shown beside your user@node
    Nick(NickArgs),
    /// List who is in a chat on every node (user@node, nick, available or away, status)
    Who,
    /// Chat in a terminal: channels, direct messages, who is there (with stdin not a
    /// terminal: send each line, print messages)
    Chat(ChatArgs),
    /// Print the address of the web chat (rossipd --http), or your own login link when it
    /// needs one (keep that link to yourself: it logs in as you)
    Web,
}

/// `nick` arguments.
#[derive(Debug, Args)]
pub struct NickArgs {
    /// The new display name (1-32 characters, no '@', no control characters); without
    /// it (and without --clear), show the current one
    #[arg(value_name = "NAME", conflicts_with = "clear")]
    pub nick: Option<String>,

    /// Remove your display name
    #[arg(long)]
    pub clear: bool,
}

/// `keygen` arguments.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write the key to FILE, created with mode 0600 (what rossipd --key-file demands),
    /// instead of printing it; refuses an existing FILE (see --force) and a symbolic link
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// With -o: replace an existing FILE (by a new file, mode 0600; never through a symbolic
    /// link)
    #[arg(long, requires = "output")]
    pub force: bool,
}

/// `keys` subcommands. A rotation without downtime: `keys install NEW`, then
/// `keys use NEWID`, then `keys remove OLDID`, each once every node confirmed the step
/// before (each is sent to every member; repeat a step for nodes that did not answer).
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show which nodes hold which keys, and which key each seals with
    List,
    /// Install a key on every member (accepted, not yet used to seal)
    Install(KeysInstallArgs),
    /// Seal with an installed key, on every member (refused while a member lacks it)
    Use(KeyIdArg),
    /// Remove a key from every member (refused while a member still seals with it)
    Remove(KeyIdArg),
}

/// `keys install` arguments.
#[derive(Debug, Args)]
pub struct KeysInstallArgs {
    /// The key (64 hex digits, from `rossipctl keygen`); `-` reads it from stdin, which
    /// keeps it out of shell history and `ps`
    #[arg(
        value_name = "KEY",
        required_unless_present = "key_file",
        conflicts_with = "key_file"
    )]
    pub key: Option<String>,

    /// Read the key from this file (its first key line, as in rossipd's key file)
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
}

/// A key id argument.
#[derive(Debug, Args)]
pub struct KeyIdArg {
    /// The key id: 8 hex digits, as `rossipctl keys list` and `status` show it
    #[arg(value_name = "ID")]
    pub id: String,

    /// Go ahead even if a member does not hold the key (`use`), still seals with it
    /// (`remove`), or does not answer: such a member is cut off until it gets the key
    #[arg(long)]
    pub force: bool,
}

/// `send` arguments.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The message; several words are joined by spaces. `-` reads the whole of stdin as
    /// one message (one trailing newline removed)
    #[arg(required = true, value_name = "TEXT")]
    pub text: Vec<String>,

    /// Channel to send to [default: general]
    #[arg(short, long, value_name = "CHANNEL", value_parser = channel_arg)]
    pub channel: Option<String>,

    /// With `-`: send each non-blank line of stdin as its own message, as it arrives
    #[arg(long)]
    pub lines: bool,

    /// Send a direct message, end-to-end encrypted, to one node (a node name, a node id or
    /// a unique prefix of it) or one user there (USER@NODE); prints whether it was
    /// delivered or queued (kept and retried until the node is back)
    #[arg(long, value_name = "NAME|USER@NODE|ID")]
    pub to: Option<String>,
}

impl SendArgs {
    /// Whether the message comes from stdin.
    pub fn reads_stdin(&self) -> bool {
        self.text.len() == 1 && self.text[0] == "-"
    }
}

/// `tail` arguments.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Show the last N messages [default: 10, or all with --since]
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub n: Option<usize>,

    /// Keep running and print new messages as they arrive; survives a rossipd restart
    #[arg(short, long)]
    pub follow: bool,

    /// Only messages after this message id, or since this time: RFC 3339
    /// (2026-11-24T05:20:01Z), local `2026-11-24 05:20:01`, or an age such as 10m or 2h
    #[arg(long, value_name = "ID|TIME", value_parser = since_arg)]
    pub since: Option<Since>,

    /// Only this channel [default: all channels]
    #[arg(short, long, value_name = "CHANNEL", value_parser = channel_arg)]
    pub channel: Option<String>,

    /// With -f: also print membership changes (joined, failed, left, …) as they happen,
    /// as `rossipctl events` does
    #[arg(long)]
    pub peers: bool,
}

impl TailArgs {
    /// How many messages to ask for: `-n`, else 10 like tail(1), but everything after
    /// `--since` when that is given without `-n`.
    pub fn count(&self) -> Option<usize> {
        match (self.n, &self.since) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => Some(10),
        }
    }
}

/// `peers` arguments.
#[derive(Debug, Args)]
pub struct PeersArgs {
    /// Also list members that failed or left
    #[arg(long)]
    pub all: bool,
}

/// `events` arguments.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// First list every known member (alive, suspect, failed, left) as it is now, and again
    /// after each reconnection or lag, so that changes missed meanwhile show up
    #[arg(long)]
    pub snapshot: bool,
}

/// `join` arguments.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Gossip address of any node of the cluster: HOST:PORT, or HOST alone for rossipd's
    /// default port (e.g. 192.0.2.7:7465, [fe80::1%eth0]:7465, build-box.local)
    #[arg(value_name = "HOST[:PORT]")]
    pub addr: String,
}

/// `completions` arguments.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate for
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `man` arguments.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write rossipctl.1 and a page per subcommand (rossipctl-send.1, …) into DIR, created
    /// if missing, and list the files written; without it, print rossipctl(1)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `chat` arguments.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The channel to start in (and, with stdin not a terminal, the only one) [default:
    /// general]
    #[arg(short, long, value_name = "CHANNEL", value_parser = channel_arg)]
    pub channel: Option<String>,

    /// Show yourself as away after this long without a key press (10m, 1h, …); 0: never
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub away_after: std::time::Duration,

    /// Messages of history to show at the start, and when joining a channel
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub backlog: usize,
}

impl Command {
    /// Whether the command runs until stopped, printing what comes (`tail -f`, `events`).
    pub fn follows(&self) -> bool {
        match self {
            Command::Tail(tail) => tail.follow,
            Command::Events(_) => true,
            _ => false,
        }
    }
}

impl Cli {
    /// The socket named by `--socket`, else by a non-empty `ROSSIP_SOCKET`; None means the
    /// defaults apply.
    pub fn socket_override(&self) -> Option<PathBuf> {
        self.socket
            .clone()
            .or_else(|| std::env::var_os(SOCKET_ENV).map(PathBuf::from))
            .filter(|path| !path.as_os_str().is_empty())
    }

    /// Checks what clap's attributes cannot express; the error exits 2 like any usage error.
    pub fn validate(&self) -> Result<(), clap::Error> {
        if let Command::Send(send) = &self.command
            && send.lines
            && !send.reads_stdin()
        {
            return Err(Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--lines reads stdin, so TEXT must be `-` (e.g. `rossipctl send --lines -`)",
            ));
        }
        if let Command::Tail(tail) = &self.command
            && tail.peers
            && !tail.follow
        {
            let message = "--peers streams membership changes as they happen, so it needs -f \
                 (`rossipctl tail -f --peers`); for the current members use `rossipctl peers`";
            let kind = clap::error::ErrorKind::MissingRequiredArgument;
            // Built, so that the usage line names `rossipctl tail`.
            let mut cli = Cli::command();
            cli.build();
            return Err(match cli.find_subcommand_mut("tail") {
                Some(tail) => tail.error(kind, message),
                None => cli.error(kind, message),
            });
        }
        Ok(())
    }
}

fn channel_arg(value: &str) -> Result<String, String> {
    validate_channel(value)
        .map(|()| value.to_owned())
        .map_err(|e| e.to_string())
}

fn since_arg(value: &str) -> Result<Since, String> {
    timefmt::parse_since(value, jiff::Timestamp::now(), &jiff::tz::TimeZone::system())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn tail_count_defaults_like_tail() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).expect("valid").command {
            Command::Tail(t) => t.count(),
            other => panic!("parsed as {other:?}"),
        };
        assert_eq!(parse(&["rossipctl", "tail"]), Some(10));
        assert_eq!(parse(&["rossipctl", "tail", "-n", "3"]), Some(3));
        assert_eq!(parse(&["rossipctl", "tail", "--since", "10m"]), None);
        assert_eq!(
            parse(&["rossipctl", "tail", "--since", "10m", "-n", "2"]),
            Some(2)
        );
    }

    #[test]
    fn send_lines_needs_stdin() {
        let cli = Cli::try_parse_from(["rossipctl", "send", "--lines", "hi"]).expect("parses");
        assert!(cli.validate().is_err());
        let cli = Cli::try_parse_from(["rossipctl", "send", "--lines", "-"]).expect("parses");
        assert!(cli.validate().is_ok());
    }

    #[test]
    fn tail_peers_needs_follow() {
        let cli = Cli::try_parse_from(["rossipctl", "tail", "--peers"]).expect("parses");
        let err = cli.validate().expect_err("--peers without -f");
        assert!(err.to_string().contains("needs -f"), "{err}");
        let cli = Cli::try_parse_from(["rossipctl", "tail", "-f", "--peers"]).expect("parses");
        assert!(cli.validate().is_ok());
    }

    #[test]
    fn events_parses() {
        let cli =
            Cli::try_parse_from(["rossipctl", "events", "--snapshot", "--json"]).expect("parses");
        assert!(cli.json);
        assert!(matches!(
            cli.command,
            Command::Events(EventsArgs { snapshot: true })
        ));
        assert!(Cli::try_parse_from(["rossipctl", "events", "extra"]).is_err());
    }

    #[test]
    fn keys_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|cli| cli.command);
        assert!(matches!(
            parse(&["rossipctl", "keys", "list"]),
            Ok(Command::Keys(KeysCommand::List))
        ));
        assert!(matches!(
            parse(&["rossipctl", "keys", "install", "-"]),
            Ok(Command::Keys(KeysCommand::Install(KeysInstallArgs { key: Some(k), key_file: None }))) if k == "-"
        ));
        assert!(matches!(
            parse(&["rossipctl", "keys", "install", "--key-file", "k"]),
            Ok(Command::Keys(KeysCommand::Install(KeysInstallArgs {
                key: None,
                key_file: Some(_)
            })))
        ));
        assert!(parse(&["rossipctl", "keys", "install"]).is_err());
        assert!(parse(&["rossipctl", "keys", "install", "-", "--key-file", "k"]).is_err());
        assert!(matches!(
            parse(&["rossipctl", "keys", "use", "0a1b2c3d"]),
            Ok(Command::Keys(KeysCommand::Use(KeyIdArg { id, force: false }))) if id == "0a1b2c3d"
        ));
        assert!(parse(&["rossipctl", "keys", "remove"]).is_err());
    }

    #[test]
    fn nick_parses() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).map(|cli| cli.command) {
            Ok(Command::Nick(NickArgs { nick, clear })) => Ok((nick, clear)),
            Ok(other) => panic!("parsed as {other:?}"),
            Err(e) => Err(e.kind()),
        };
        assert_eq!(parse(&["rossipctl", "nick"]), Ok((None, false)));
        assert_eq!(
            parse(&["rossipctl", "nick", "Ann S."]),
            Ok((Some("Ann S.".to_owned()), false))
        );
        assert_eq!(parse(&["rossipctl", "nick", "--clear"]), Ok((None, true)));
        assert!(parse(&["rossipctl", "nick", "Ann", "--clear"]).is_err());
        assert!(matches!(
            Cli::try_parse_from(["rossipctl", "channels", "--json"]).map(|c| c.command),
            Ok(Command::Channels)
        ));
    }

    #[test]
    fn arguments_are_checked() {
        assert!(Cli::try_parse_from(["rossipctl", "send", "-c", "a b", "x"]).is_err());
        assert!(Cli::try_parse_from(["rossipctl", "join"]).is_err());
        assert!(Cli::try_parse_from(["rossipctl", "tail", "--since", "soon"]).is_err());
    }
}
