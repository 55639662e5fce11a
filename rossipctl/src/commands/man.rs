//! `rossipctl man [--dir DIR]`: the manual pages, rendered from the clap
//! definitions (clap_mangen) so that they cannot drift from `--help`.
//! Without `--dir`, rossipctl(1) goes to stdout; with it, one page per
//! visible subcommand is written too (`rossipctl-keys-install.1`, …), which is
//! what the install script and the Debian package ship.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;
use roff::{Roff, bold, roman};

use crate::cli::{Cli, ManArgs};
use crate::output::Out;

/// The manual section of every rossipctl page (user commands).
const SECTION: &str = "1";

/// Prints rossipctl(1), or writes every page into `args.dir` and lists the
/// files written, one per line.
pub fn run(out: &mut Out<impl Write>, args: ManArgs) -> anyhow::Result<()> {
    let pages = pages().context("cannot render the manual pages")?;
    let Some(dir) = args.dir else {
        // The first page is the top-level one; generated into memory first, so
        // that a closed pipe ends quietly (Out reports it as StdoutClosed).
        if let Some(page) = pages.first() {
            out.bytes(&page.roff)?;
        }
        return out.flush();
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    for page in &pages {
        let path = dir.join(&page.file_name);
        write_file(&path, &page.roff)?;
        out.line(&path.display().to_string())?;
    }
    out.flush()
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// One rendered manual page.
#[derive(Debug)]
pub struct Page {
    /// `rossipctl.1`, `rossipctl-keys-install.1`, …
    pub file_name: String,
    /// The page's roff source.
    pub roff: Vec<u8>,
}

/// rossipctl(1) first, then a page for each visible subcommand, depth first.
pub fn pages() -> std::io::Result<Vec<Page>> {
    // `help` is clap's own subcommand: `--help` covers it, it gets no page.
    let mut root = Cli::command().disable_help_subcommand(true);
    // Building sets the display names (`rossipctl-keys`) and the bin names
    // (`rossipctl keys`) of the subcommands, which name their pages.
    root.build();
    let mut pages = Vec::new();
    collect(&root, None, &mut pages)?;
    Ok(pages)
}

/// Renders `command`'s page (its parent's page name is `parent`), then its
/// subcommands'.
fn collect(
    command: &clap::Command,
    parent: Option<&str>,
    pages: &mut Vec<Page>,
) -> std::io::Result<()> {
    let name = page_name(command);
    // The footer names the program and version on every page (clap_mangen
    // would put the bare subcommand name there).
    let man = clap_mangen::Man::new(command.clone())
        .section(SECTION)
        .source(concat!("rossipctl ", env!("CARGO_PKG_VERSION")));
    let mut roff = Vec::new();
    man.render(&mut roff)?;
    // A Roff document starts with its preamble (the apostrophe string),
    // which the page already has.
    let extra = extra_sections(parent).render();
    let preamble = Roff::new().render();
    roff.extend_from_slice(extra.strip_prefix(&preamble).unwrap_or(&extra).as_bytes());
    pages.push(Page {
        file_name: man.get_filename(),
        roff,
    });
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, Some(&name), pages)?;
    }
    Ok(())
}

/// `rossipctl` or `rossipctl-keys-install`: the page's name.
fn page_name(command: &clap::Command) -> String {
    command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_owned()
}

/// What clap does not know: the environment and files of the top-level
/// page, and on every page the pages to read next.
fn extra_sections(parent: Option<&str>) -> Roff {
    let mut roff = Roff::new();
    if parent.is_none() {
        roff.control("SH", ["ENVIRONMENT"]);
        paragraph(
            &mut roff,
            "ROSSIP_SOCKET",
            "The socket of rossipd, when --socket is not given (an empty value counts as unset).",
        );
        paragraph(
            &mut roff,
            "XDG_RUNTIME_DIR",
            "Where a user's rossipd puts its socket (rossip/rossipd.sock inside it).",
        );
        roff.control("SH", ["FILES"]);
        roff.text([roman(
            "Without --socket and ROSSIP_SOCKET, rossipctl tries these sockets in this order and \
             uses the first one a rossipd answers on (a socket file nobody listens on is passed \
             over, and so is a rossipd run by another user than this one or root, as the kernel \
             tells it: \"served by uid N, not you: passed over\"); if none answers, the error \
             names each one and what was there.",
        )]);
        paragraph(
            &mut roff,
            "$XDG_RUNTIME_DIR/rossip/rossipd.sock",
            "The socket of a user's rossipd (systemctl --user, or rossipd started in a login \
             session); only when XDG_RUNTIME_DIR is set.",
        );
        paragraph(
            &mut roff,
            "/run/user/UID/rossip/rossipd.sock",
            "The same socket when the login session's XDG_RUNTIME_DIR was logind's \
             /run/user/UID, as it usually is: found from su, sudo -u or cron, which drop the \
             variable.",
        );
        paragraph(
            &mut roff,
            "/tmp/rossip-UID/rossipd.sock",
            "Where a user's rossipd started without XDG_RUNTIME_DIR (su, sudo -u, cron) puts its \
             socket. Not used when /tmp/rossip-UID belongs to another user or is a symbolic \
             link.",
        );
        paragraph(
            &mut roff,
            rossip_proto::paths::SYSTEM_SOCKET_PATH,
            "The socket of the system service; its users must be in its group, rossip \
             (usermod -aG rossip NAME). Served by root, or by the user owning /run/rossip (the \
             service's User=, rossip).",
        );
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut refs = Vec::new();
    if let Some(parent) = parent {
        refs.push(bold(parent));
        refs.push(roman(format!("({SECTION}), ")));
    }
    refs.push(bold("rossipd"));
    refs.push(roman("(8)"));
    roff.text(refs);
    roff
}

/// A tagged paragraph: `tag` in bold, then `text` indented below it.
fn paragraph(roff: &mut Roff, tag: &str, text: &str) {
    roff.control("TP", []);
    roff.text([bold(tag)]);
    roff.text([roman(text)]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Out;

    fn page<'a>(pages: &'a [Page], file_name: &str) -> &'a str {
        let page = pages
            .iter()
            .find(|p| p.file_name == file_name)
            .unwrap_or_else(|| panic!("no page {file_name}"));
        std::str::from_utf8(&page.roff).expect("roff is UTF-8")
    }

    #[test]
    fn one_page_per_visible_subcommand() {
        let pages = pages().expect("render");
        let names: Vec<_> = pages.iter().map(|p| p.file_name.as_str()).collect();
        assert_eq!(names[0], "rossipctl.1");
        for want in [
            "rossipctl-send.1",
            "rossipctl-tail.1",
            "rossipctl-keys.1",
            "rossipctl-keys-install.1",
            "rossipctl-keys-use.1",
            "rossipctl-man.1",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert!(
            !names.iter().any(|n| n.contains("help")),
            "clap's help subcommand gets no page: {names:?}"
        );
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate pages: {names:?}");
    }

    #[test]
    fn pages_name_their_section_and_parent() {
        let pages = pages().expect("render");
        let top = page(&pages, "rossipctl.1");
        assert!(top.contains(".TH rossipctl 1"), "{top}");
        assert!(top.contains("SEE ALSO"), "{top}");
        assert!(top.contains("rossipd.sock"), "{top}");
        assert_eq!(
            top.matches(".ds Aq").count(),
            2,
            "one preamble (.ie/.el):\n{top}"
        );
        let install = page(&pages, "rossipctl-keys-install.1");
        let th = install
            .lines()
            .find(|l| l.starts_with(".TH"))
            .expect("a .TH line");
        assert!(th.starts_with(".TH rossipctl-keys-install 1 "), "{th}");
        assert!(
            th.contains(concat!("\"rossipctl ", env!("CARGO_PKG_VERSION"), "\"")),
            "the footer names the program: {th}"
        );
        assert!(
            install.contains("rossipctl keys install"),
            "synopsis: {install}"
        );
        let see_also = install
            .split("SEE ALSO")
            .nth(1)
            .expect("a SEE ALSO section");
        assert!(see_also.contains("rossipctl\\-keys"), "{see_also}");
        let send = page(&pages, "rossipctl-send.1");
        let see_also = send.split("SEE ALSO").nth(1).expect("a SEE ALSO section");
        assert!(see_also.contains("\\fBrossipctl\\fR(1)"), "{see_also}");
    }

    #[test]
    fn without_dir_prints_the_top_page() {
        let mut out = Out::new(Vec::new());
        run(&mut out, ManArgs { dir: None }).expect("run");
        let text = String::from_utf8(out.get_ref().clone()).expect("UTF-8");
        assert!(text.contains(".TH rossipctl 1"), "{text}");
        assert!(!text.contains(".TH rossipctl-send"), "{text}");
    }

    #[test]
    fn with_dir_writes_every_page() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("man1");
        let mut out = Out::new(Vec::new());
        run(
            &mut out,
            ManArgs {
                dir: Some(target.clone()),
            },
        )
        .expect("run");
        let listed = String::from_utf8(out.get_ref().clone()).expect("UTF-8");
        let expected = pages().expect("render");
        assert_eq!(listed.lines().count(), expected.len(), "{listed}");
        for page in &expected {
            let written = std::fs::read(target.join(&page.file_name)).expect("page written");
            assert_eq!(written, page.roff, "{}", page.file_name);
        }
    }

    #[test]
    fn a_closed_pipe_is_reported_as_stdout_closed() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
        }
        let err = run(&mut Out::new(Closed), ManArgs { dir: None }).expect_err("closed pipe");
        assert!(
            err.downcast_ref::<crate::output::StdoutClosed>().is_some(),
            "{err:#}"
        );
    }
}
