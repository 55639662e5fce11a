//! `rossipd --man-page`: the rossipd(8) manual page. NAME, SYNOPSIS,
//! DESCRIPTION and OPTIONS are rendered from the flag definitions (so they
//! cannot drift from `--help`), and the ENVIRONMENT list from the flags'
//! variables; SIGNALS, EXIT STATUS, FILES and SEE ALSO are written here.

use std::io::Write as _;
use std::process::ExitCode;

use roff::{Roff, bold, roman};

/// The manual section: system administration commands and daemons.
const SECTION: &str = "8";

/// Renders the page for `command` (rossipd's `Args::command()`).
pub fn render(command: &clap::Command) -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(command.clone()).section(SECTION);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    // Each part is a Roff document of its own, which repeats the preamble
    // (the apostrophe string): keep only the first.
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for render in [
        clap_mangen::Man::render_name_section,
        clap_mangen::Man::render_synopsis_section,
        clap_mangen::Man::render_description_section,
        clap_mangen::Man::render_options_section,
    ] {
        let mut part = Vec::new();
        render(&man, &mut part)?;
        parts.push(part);
    }
    parts.push(sections(command).render().into_bytes());
    let mut version = Vec::new();
    man.render_version_section(&mut version)?;
    parts.push(version);
    parts.push(see_also().render().into_bytes());
    let preamble = Roff::new().render().into_bytes();
    for part in parts {
        page.extend_from_slice(part.strip_prefix(preamble.as_slice()).unwrap_or(&part));
    }
    Ok(page)
}

/// Writes the page to stdout; a closed pipe (`| head`) is not an error.
pub fn print(command: &clap::Command) -> ExitCode {
    let page = match render(command) {
        Ok(page) => page,
        Err(e) => {
            eprintln!("rossipd: error: cannot render the manual page: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&page).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rossipd: error: cannot write the manual page: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGNALS, EXIT STATUS, ENVIRONMENT and FILES.
fn sections(command: &clap::Command) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["SIGNALS"]);
    item(
        &mut roff,
        "SIGTERM, SIGINT",
        "Leave the cluster gracefully (peers are told, so they do not wait for a \
         failure timeout), close the local socket and exit with status 0.",
    );
    item(
        &mut roff,
        "SIGHUP",
        "Reopen the log file (after log rotation), read the config file again and apply \
         what can change while running: the log level, and the keys added to the cluster \
         key file since it was last read that this node lacks (installed and saved). A \
         reload never changes the sealing key and never removes a key (rossipctl keys use \
         and keys remove do that, once every member is ready); a key removed with rossipctl \
         keys remove is not brought back by a stale key file; a key from systemd's \
         LoadCredential= is copied once at start and needs a restart. Every other changed \
         key is logged as needing a restart; the last line is \"reload done: N applied, M \
         not applied\". A config file with an error changes nothing but the log file \
         (reopened first); the last line is then \"reload failed, the running configuration \
         is unchanged\" with the reason, and there is no \"reload done\" line. systemctl \
         reload rossipd sends it.",
    );

    roff.control("SH", ["EXIT STATUS"]);
    item(
        &mut roff,
        "0",
        "Stopped by SIGTERM or SIGINT, or --check-config found the configuration valid.",
    );
    item(
        &mut roff,
        "1",
        "A runtime failure: a socket could not be bound, the state directory or history \
         database could not be used, and so on; the reason is printed on standard error.",
    );
    item(
        &mut roff,
        "2",
        "A usage or configuration error: a bad flag, variable or config file key (the \
         message names the flag, the variable, or the file, line and key).",
    );

    roff.control("SH", ["ENVIRONMENT"]);
    let mut read_by_hand: Vec<String> = crate::settings::variables_read_by_hand()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let last = read_by_hand.pop().unwrap_or_default();
    roff.text([roman(format!(
        "Each ROSSIP_ variable stands for a flag: a flag beats its variable, which beats \
         the config file. An empty {} or {last} counts as unset.",
        read_by_hand.join(", ")
    ))]);
    for (name, flag) in flag_variables(command) {
        item(&mut roff, &name, &format!("Same as --{flag}."));
    }
    item(
        &mut roff,
        "RUST_LOG",
        "A tracing filter (e.g. rossipd=debug,mdns_sd=info) that overrides --log-level.",
    );
    item(
        &mut roff,
        "NOTIFY_SOCKET, WATCHDOG_USEC",
        "Set by systemd for Type=notify: rossipd sends READY=1 once it serves, STATUS= \
         with the peer count, WATCHDOG=1 and STOPPING=1.",
    );
    item(
        &mut roff,
        "CREDENTIALS_DIRECTORY",
        "Set by systemd for LoadCredential=: the cluster key is read from rossip.key in \
         it when --key-file is not given.",
    );
    item(
        &mut roff,
        "XDG_CONFIG_HOME, XDG_RUNTIME_DIR, XDG_STATE_HOME, HOME",
        "Where a user's daemon looks for its config file, puts its socket and keeps its \
         state (see FILES).",
    );

    roff.control("SH", ["FILES"]);
    item(
        &mut roff,
        "/etc/rossip/rossipd.toml",
        "The config file of the system daemon (TOML; every flag is a key, with \
         underscores for dashes). A missing default file is fine.",
    );
    item(
        &mut roff,
        "$XDG_CONFIG_HOME/rossip/rossipd.toml",
        "The config file of a user's daemon (~/.config/rossip/rossipd.toml when \
         XDG_CONFIG_HOME is unset).",
    );
    item(
        &mut roff,
        "/etc/rossip/rossip.key",
        "The cluster key of the system service, by convention: handed over with \
         LoadCredential=rossip.key:/etc/rossip/rossip.key (mode 0600).",
    );
    item(
        &mut roff,
        rossip_proto::paths::SYSTEM_SOCKET_PATH,
        "The JSON-RPC socket of the system service (mode 0660, group rossip).",
    );
    item(
        &mut roff,
        "$XDG_RUNTIME_DIR/rossip/rossipd.sock",
        "The socket of a user's daemon (mode 0600); /tmp/rossip-UID/rossipd.sock when \
         XDG_RUNTIME_DIR is unset (su, sudo -u, cron), never /run/user/UID, which logind removes \
         at the user's last logout. rossipctl looks in both places, and in /run/user/UID.",
    );
    item(
        &mut roff,
        "/var/lib/rossip",
        "The state directory of the system service; a user's is $XDG_STATE_HOME/rossip \
         (~/.local/state/rossip). It holds:",
    );
    roff.control("RS", []);
    for (file, what) in STATE_FILES {
        item(&mut roff, file, what);
    }
    roff.control("RE", []);
    roff
}

/// The files of the state directory (the names are those of `state.rs`,
/// `keyfile.rs`, `store.rs`, `http/token.rs`, `pins.rs`, `peer_cache.rs` and
/// `logging.rs`).
const STATE_FILES: [(&str, &str); 10] = [
    (
        "node.key",
        "The node's secret Ed25519 signing key (mode 0600); the node id derives from it. \
         Losing it makes the node a new member.",
    ),
    (
        rossipd::keyfile::STATE_FILE_NAME,
        "The cluster keys as last changed by rossipctl keys; when present it supersedes \
         --key-file.",
    ),
    (
        rossipd::store::FILE_NAME,
        "The message history (SQLite, WAL mode, with its -wal and -shm files). A damaged \
         database is moved aside as history.db.corrupt-TIME and a new one started.",
    ),
    (
        rossipd::HTTP_SECRET_FILE,
        "The secret of the web chat's login tokens (32 random bytes, mode 0600), made at the \
         first start with --http when a token is needed; remove it and restart to revoke \
         every login link.",
    ),
    (
        "known_names",
        "Node names pinned to the first key seen using them, one per line; remove a line to \
         accept a node's new key.",
    ),
    (
        "nicks",
        "The display names this node's users chose (rossipctl nick), a JSON object of user \
         name to display name.",
    ),
    (
        "peers",
        "The addresses of the last known live members, greeted first at start.",
    ),
    (
        "next_seq",
        "The reservation of message sequence numbers, so ids stay unique across restarts.",
    ),
    (
        "generation",
        "The generation of the last run, so that every run outranks the one before.",
    ),
    (
        crate::logging::FALLBACK_LOG_FILE,
        "The log of a daemon started with --daemonize without --log-file on a host without \
         syslog (created mode 0640, as --log-file would be; a symbolic link is refused).",
    ),
];

/// SEE ALSO.
fn see_also() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("rossipctl"),
        roman("(1), "),
        bold("systemd.service"),
        roman("(5), "),
        bold("systemd-sysusers"),
        roman("(8), "),
        bold("systemd-tmpfiles"),
        roman("(8)"),
    ]);
    roff
}

/// Every ROSSIP_* variable and the flag it stands for: clap's `env` of each
/// flag, and those read by hand, sorted by name.
fn flag_variables(command: &clap::Command) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = command
        .get_arguments()
        .filter_map(|arg| {
            let name = arg.get_env()?.to_string_lossy().into_owned();
            let flag = arg.get_long()?.to_owned();
            Some((name, flag))
        })
        .chain(crate::settings::variables_read_by_hand())
        .collect();
    vars.sort();
    vars.dedup();
    vars
}

/// A tagged paragraph: `tag` in bold, `text` indented below it.
fn item(roff: &mut Roff, tag: &str, text: &str) {
    roff.control("TP", []);
    roff.text([bold(tag)]);
    roff.text([roman(text)]);
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    fn page() -> String {
        let bytes = render(&crate::Args::command()).expect("render");
        String::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn the_page_has_its_title_and_sections_in_order() {
        let page = page();
        let th = page
            .lines()
            .find(|l| l.starts_with(".TH"))
            .expect("a .TH line");
        assert!(th.starts_with(".TH rossipd 8"), "{th}");
        let mut at = 0;
        for heading in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH SIGNALS",
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
            ".SH FILES",
            ".SH VERSION",
            ".SH \"SEE ALSO\"",
        ] {
            let found = page[at..]
                .find(heading)
                .unwrap_or_else(|| panic!("{heading} missing or out of order:\n{page}"));
            at += found + heading.len();
        }
        assert_eq!(
            page.matches(".ds Aq").count(),
            2,
            "the preamble (.ie/.el) once:\n{page}"
        );
    }

    #[test]
    fn every_flag_variable_is_listed() {
        let page = page();
        let command = crate::Args::command();
        let vars = flag_variables(&command);
        for name in [
            "ROSSIP_PORT",
            "ROSSIP_CONFIG",
            "ROSSIP_SOCKET",
            "ROSSIP_KEY_FILE",
        ] {
            assert!(
                vars.iter().any(|(n, _)| n == name),
                "{name} not in {vars:?}"
            );
        }
        for (name, _) in &vars {
            assert!(page.contains(name.as_str()), "{name} missing:\n{page}");
        }
        for name in ["RUST_LOG", "NOTIFY_SOCKET", "CREDENTIALS_DIRECTORY"] {
            assert!(page.contains(name), "{name} missing");
        }
    }

    /// The variables read by hand say so in their flag's help, and name the
    /// right flag.
    #[test]
    fn hand_read_variables_match_their_flags() {
        let command = crate::Args::command();
        for (name, flag) in crate::settings::variables_read_by_hand() {
            let arg = command
                .get_arguments()
                .find(|a| a.get_long() == Some(flag.as_str()))
                .unwrap_or_else(|| panic!("no --{flag}"));
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(help.contains(&format!("[env: {name}]")), "--{flag}: {help}");
        }
    }

    #[test]
    fn files_name_the_real_state_files() {
        let page = page();
        for file in [
            "/etc/rossip/rossipd.toml",
            "rossip/rossipd.toml",
            "/run/rossip/rossipd.sock",
            "node.key",
            "keyring",
            "history.db",
            "http\\-secret",
            "known_names",
            "nicks",
            "peers",
        ] {
            assert!(page.contains(file), "{file} missing from FILES");
        }
        assert!(page.contains("\\fBrossipctl\\fR(1)"), "SEE ALSO");
        assert!(page.contains("systemd.service"), "SEE ALSO");
    }
}
