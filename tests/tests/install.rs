//! Installing: `systemd/install.sh` into a temporary DESTDIR (every file,
//! its mode and content checked whatever the caller's umask, the installed
//! programs run, then `--uninstall` leaves nothing behind; unsafe prefixes
//! and tampered manifests refused), and the example config file. The
//! Debian package is tested in `debian.rs`.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use rossip_tests::bins;
use rossip_tests::sys::{self, describe, mode, output, read, repo, run_ok};

/// The prefix the tests install into (inside a DESTDIR).
const PREFIX: &str = "/usr";

/// Flags of rossipd that are not settings, so have no config file key.
const NOT_SETTINGS: [&str; 5] = ["config", "check-config", "man-page", "help", "version"];

/// `bash systemd/install.sh ARGS` with `DESTDIR=destdir`.
fn install_sh(destdir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("bash");
    command
        .arg(repo().join("systemd/install.sh"))
        .args(args)
        .env("DESTDIR", destdir);
    command
}

/// Like [`install_sh`], but started by `sh` with `umask 077` (what sudo
/// keeps from a careful user): the installed tree must not depend on it.
fn install_sh_umask077(destdir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("umask 077; exec bash \"$0\" \"$@\"")
        .arg(repo().join("systemd/install.sh"))
        .args(args)
        .env("DESTDIR", destdir);
    command
}

/// A rossipd run that sees no ROSSIP_* variable of the test's environment.
fn rossipd_command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ROSSIP_") {
            command.env_remove(name);
        }
    }
    command
}

/// Every file under `root`, as paths relative to it with a leading `/`.
fn files_under(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, found: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.expect("read a directory entry").path();
            if path.is_dir() {
                walk(&path, root, found);
            } else {
                let rel = path.strip_prefix(root).expect("under the root");
                found.insert(format!("/{}", rel.display()));
            }
        }
    }
    let mut found = BTreeSet::new();
    walk(root, root, &mut found);
    found
}

/// `root` and every directory under it.
fn dirs_under(root: &Path) -> Vec<PathBuf> {
    let mut found = vec![root.to_path_buf()];
    let mut next = 0;
    while next < found.len() {
        if let Ok(entries) = std::fs::read_dir(&found[next]) {
            for entry in entries {
                let path = entry.expect("read a directory entry").path();
                if path.is_dir() && !path.is_symlink() {
                    found.push(path);
                }
            }
        }
        next += 1;
    }
    found
}

/// A fresh, empty TMPDIR for install.sh, so a test can check that it
/// leaves no temporary file behind.
fn scratch_tmpdir(tmp: &Path) -> PathBuf {
    let dir = tmp.join("tmpdir");
    std::fs::create_dir_all(&dir).expect("create the TMPDIR");
    dir
}

fn assert_empty_dir(dir: &Path, after: &str) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(
        left.is_empty(),
        "temporary files left in TMPDIR after {after}: {left:?}"
    );
}

/// The page's `.TH` line, which must come right after the roff preamble
/// (`.ie`/`.el`, which defines the apostrophe string the page uses).
fn title_line(page: &str, path: &Path) -> String {
    let first = page
        .lines()
        .find(|l| !l.starts_with(".ie ") && !l.starts_with(".el "))
        .unwrap_or_default();
    assert!(
        first.starts_with(".TH "),
        "{}: the page should start with .TH, not {first:?}",
        path.display()
    );
    first.to_owned()
}

/// The files install.sh installs under the prefix, with their modes.
fn expected_files() -> Vec<(&'static str, u32)> {
    vec![
        ("bin/rossipd", 0o755),
        ("bin/rossipctl", 0o755),
        ("lib/systemd/system/rossipd.service", 0o644),
        ("lib/systemd/user/rossipd.service", 0o644),
        ("lib/sysusers.d/rossip.conf", 0o644),
        ("lib/tmpfiles.d/rossip.conf", 0o644),
        ("share/bash-completion/completions/rossipctl", 0o644),
        ("share/zsh/site-functions/_rossipctl", 0o644),
        ("share/fish/vendor_completions.d/rossipctl.fish", 0o644),
        ("share/man/man1/rossipctl.1", 0o644),
        ("share/man/man1/rossipctl-send.1", 0o644),
        ("share/man/man1/rossipctl-keys.1", 0o644),
        ("share/man/man1/rossipctl-keys-install.1", 0o644),
        ("share/man/man8/rossipd.8", 0o644),
        ("share/doc/rossip/README.md", 0o644),
        ("share/doc/rossip/SECURITY.md", 0o644),
        ("share/doc/rossip/rossipd.toml.example", 0o644),
        ("share/rossip/install-manifest", 0o644),
    ]
}

#[test]
fn install_into_destdir_then_uninstall() {
    // Fails with a hint when the binaries were not built.
    bins::rossipd();
    bins::rossipctl();
    let from = bins::target_profile_dir();
    let tmp = tempfile::tempdir().expect("temp dir");
    let destdir = tmp.path().join("root");
    let from_arg = from.to_string_lossy().into_owned();
    let scratch = scratch_tmpdir(tmp.path());
    let install_args = ["--prefix", PREFIX, "--from", &from_arg, "--no-build"];
    let stdout = run_ok(install_sh_umask077(&destdir, &install_args).env("TMPDIR", &scratch));
    assert!(
        stdout.contains("systemctl enable --now rossipd"),
        "the next step is printed:\n{stdout}"
    );
    assert_empty_dir(&scratch, "an install");
    let root = destdir.join(PREFIX.trim_start_matches('/'));

    // Modes are the installer's, not the caller's umask (077 above).
    for (rel, want) in expected_files() {
        let path = root.join(rel);
        assert_eq!(mode(&path), want, "mode of {}", path.display());
    }
    for dir in dirs_under(&destdir) {
        assert_eq!(
            mode(&dir),
            0o755,
            "mode of the directory {} (made under umask 077)",
            dir.display()
        );
    }

    // The manifest lists exactly what is there.
    let manifest: BTreeSet<String> = read(&root.join("share/rossip/install-manifest"))
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        manifest,
        files_under(&destdir),
        "manifest vs installed tree"
    );

    // The units start the installed binary.
    for unit in [
        "lib/systemd/system/rossipd.service",
        "lib/systemd/user/rossipd.service",
    ] {
        let text = read(&root.join(unit));
        let exec: Vec<_> = text
            .lines()
            .filter(|l| l.starts_with("ExecStart="))
            .collect();
        assert_eq!(exec.len(), 1, "{unit}: {exec:?}");
        assert!(
            exec[0].starts_with("ExecStart=/usr/bin/rossipd"),
            "{unit}: {}",
            exec[0]
        );
    }
    verify_installed_units(&root, tmp.path());

    // Man pages: a .TH line naming the page and its section.
    let mut pages = 0;
    for (dir, section) in [("share/man/man1", "1"), ("share/man/man8", "8")] {
        for entry in std::fs::read_dir(root.join(dir)).expect("man directory") {
            let path = entry.expect("entry").path();
            let name = path
                .file_stem()
                .expect("a page name")
                .to_string_lossy()
                .into_owned();
            let th = title_line(&read(&path), &path);
            assert!(
                th.starts_with(&format!(".TH {name} {section} ")),
                "{}: {th}",
                path.display()
            );
            pages += 1;
        }
    }
    assert!(pages >= 10, "only {pages} man pages");

    // The completions are scripts the shells accept.
    let bash = root.join("share/bash-completion/completions/rossipctl");
    run_ok(Command::new("bash").arg("-n").arg(&bash));
    assert!(read(&bash).contains("rossipctl"));
    assert!(
        read(&root.join("share/zsh/site-functions/_rossipctl")).starts_with("#compdef rossipctl")
    );
    assert!(
        read(&root.join("share/fish/vendor_completions.d/rossipctl.fish"))
            .contains("complete -c rossipctl")
    );

    // The installed programs run, and accept the installed example config.
    let version = run_ok(Command::new(root.join("bin/rossipctl")).arg("--version"));
    assert!(version.starts_with("rossipctl "), "{version}");
    let rossipd = root.join("bin/rossipd");
    let version = run_ok(rossipd_command(&rossipd).arg("--version"));
    assert!(version.starts_with("rossipd "), "{version}");
    let example = root.join("share/doc/rossip/rossipd.toml.example");
    let checked = run_ok(
        rossipd_command(&rossipd)
            .arg("--check-config")
            .arg("--config")
            .arg(&example),
    );
    assert!(checked.starts_with("config ok:"), "{checked}");

    // Installing again over the same tree is fine (an upgrade).
    run_ok(install_sh(&destdir, &install_args).env("TMPDIR", &scratch));
    assert_eq!(manifest, files_under(&destdir), "after a reinstall");
    assert_empty_dir(&scratch, "a reinstall");

    // --uninstall (the prefix spelled with a trailing slash) removes it all.
    run_ok(install_sh(&destdir, &["--prefix", "/usr/", "--uninstall"]).env("TMPDIR", &scratch));
    assert_empty_dir(&scratch, "an uninstall");
    let left = files_under(&destdir);
    assert!(left.is_empty(), "left behind after --uninstall: {left:?}");
    // A second uninstall has no manifest to go by, and says so.
    let out = output(&mut install_sh(
        &destdir,
        &["--prefix", PREFIX, "--uninstall"],
    ));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no manifest"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `systemd-analyze verify` on the installed units (copies whose
/// ExecStart= is the DESTDIR binary: verify wants it to exist). Required
/// with CI=true.
fn verify_installed_units(root: &Path, tmp: &Path) {
    let Some(analyze) = sys::find_program("systemd-analyze") else {
        assert!(
            !sys::ci(),
            "systemd-analyze is required with CI=true (apt-get install systemd)"
        );
        sys::say("skipping systemd-analyze verify: systemd-analyze is not installed");
        return;
    };
    let binary = root.join("bin/rossipd");
    for (unit, user) in [
        ("lib/systemd/system/rossipd.service", false),
        ("lib/systemd/user/rossipd.service", true),
    ] {
        let text = read(&root.join(unit)).replace(
            "ExecStart=/usr/bin/rossipd",
            &format!("ExecStart={}", binary.display()),
        );
        let dir = tmp.join(if user { "verify-user" } else { "verify-system" });
        std::fs::create_dir_all(&dir).expect("create the verify dir");
        let copy = dir.join("rossipd.service");
        std::fs::write(&copy, text).expect("write the unit copy");
        let mut command = Command::new(&analyze);
        if user {
            let runtime = tmp.join("runtime");
            std::fs::create_dir_all(&runtime).expect("create a runtime dir");
            command.arg("--user").env("XDG_RUNTIME_DIR", runtime);
        }
        let out = output(command.arg("verify").arg(&copy));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{} failed ({}):\n{stderr}",
            describe(&command),
            out.status
        );
    }
}

#[test]
fn install_without_binaries_says_what_to_do() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).expect("create an empty dir");
    let from = empty.to_string_lossy().into_owned();
    let out = output(&mut install_sh(
        &tmp.path().join("root"),
        &["--prefix", PREFIX, "--from", &from, "--no-build"],
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("rossipd is missing") && stderr.contains("drop --no-build"),
        "{stderr}"
    );
    assert!(files_under(&tmp.path().join("root")).is_empty());
    let out = output(&mut install_sh(&tmp.path().join("root"), &["--bogus"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument: --bogus"));
}

/// A prefix is spliced into sed expressions and unit files: one with a
/// space, `#`, `&`, a backslash, a newline or a `..` component is refused
/// before anything is installed.
#[test]
fn install_refuses_unsafe_prefixes() {
    bins::rossipd();
    bins::rossipctl();
    let from = bins::target_profile_dir().to_string_lossy().into_owned();
    let tmp = tempfile::tempdir().expect("temp dir");
    for prefix in [
        "/tmp/a b",
        "/tmp/a#b",
        "/tmp/a&b",
        "/tmp/a\\b",
        "/tmp/a\nExecStartPre=/bin/true",
        "/tmp/../etc",
    ] {
        let destdir = tmp.path().join("root");
        let mut command = install_sh(
            &destdir,
            &["--prefix", prefix, "--from", &from, "--no-build"],
        );
        let out = output(&mut command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("--prefix"),
            "{} should be refused ({}):\n{stderr}",
            describe(&command),
            out.status
        );
        let installed = files_under(&destdir);
        assert!(installed.is_empty(), "{prefix:?}: installed {installed:?}");
    }
}

/// `--uninstall` removes (as root) what the manifest lists: a line outside
/// the installer's own directories (through `..`, or anywhere with
/// `--prefix /`) makes it refuse before removing anything, and so does a
/// reinstall, which removes the files the old manifest lists.
#[test]
fn uninstall_refuses_a_tampered_manifest() {
    bins::rossipd();
    bins::rossipctl();
    let from = bins::target_profile_dir().to_string_lossy().into_owned();
    for (prefix, bad_line) in [
        // From DESTDIR/usr/bin up three levels: the canary next to DESTDIR.
        ("/usr", "/usr/bin/../../../canary"),
        ("/usr", "/usr/./bin/../../../canary"),
        ("/usr", "/usr/share/rossip/.."),
        // With prefix "/" every absolute path is under the prefix.
        ("/", "/canary"),
        ("/", "/etc/canary"),
    ] {
        let tmp = tempfile::tempdir().expect("temp dir");
        let scratch = scratch_tmpdir(tmp.path());
        let destdir = tmp.path().join("root");
        let install_args = ["--prefix", prefix, "--from", &from, "--no-build"];
        run_ok(&mut install_sh(&destdir, &install_args));
        let canary = tmp.path().join("canary");
        std::fs::write(&canary, "keep me").expect("write the canary");
        std::fs::create_dir_all(destdir.join("etc")).expect("create DESTDIR/etc");
        let inside_canary = destdir.join("etc/canary");
        std::fs::write(&inside_canary, "keep me").expect("write the canary");
        let manifest = destdir
            .join(prefix.trim_start_matches('/'))
            .join("share/rossip/install-manifest");
        let text = read(&manifest);
        std::fs::write(&manifest, format!("{text}{bad_line}\n")).expect("tamper the manifest");
        let before = files_under(&destdir);

        for args in [&["--prefix", prefix, "--uninstall"][..], &install_args[..]] {
            let mut command = install_sh(&destdir, args);
            command.env("TMPDIR", &scratch);
            let what = format!("the manifest line {bad_line:?}");
            assert_refused(
                &mut command,
                "refusing to remove anything",
                &destdir,
                &before,
                &what,
            );
            assert!(
                canary.exists(),
                "{bad_line:?}: the canary outside DESTDIR was removed"
            );
            assert_empty_dir(&scratch, &describe(&command));
        }
    }
}

/// Runs `command`, which must fail saying `refusal` and leave the files
/// under `destdir` as `before`; `what` names the case in failures.
fn assert_refused(
    command: &mut Command,
    refusal: &str,
    destdir: &Path,
    before: &BTreeSet<String>,
    what: &str,
) {
    let out = output(command);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(refusal),
        "{} should refuse {what} ({}):\n{stderr}",
        describe(command),
        out.status
    );
    assert_eq!(
        *before,
        files_under(destdir),
        "{what}: {} changed files",
        describe(command)
    );
}

/// Root does not remove what a manifest that someone else owns (or could
/// write) lists. Only checked when the test runs as root.
#[test]
fn uninstall_as_root_refuses_a_manifest_root_does_not_own() {
    use std::os::unix::fs::MetadataExt as _;
    let tmp = tempfile::tempdir().expect("temp dir");
    if std::fs::metadata(tmp.path())
        .expect("stat the temp dir")
        .uid()
        != 0
    {
        sys::skipped(
            "uninstall_as_root_refuses_a_manifest_root_does_not_own",
            "the test does not run as root",
        );
        return;
    }
    bins::rossipd();
    bins::rossipctl();
    let from = bins::target_profile_dir().to_string_lossy().into_owned();
    let destdir = tmp.path().join("root");
    run_ok(&mut install_sh(
        &destdir,
        &["--prefix", PREFIX, "--from", &from, "--no-build"],
    ));
    let manifest = destdir.join("usr/share/rossip/install-manifest");
    let before = files_under(&destdir);
    for (uid, file_mode) in [(65534, 0o644), (0, 0o664), (0, 0o646)] {
        std::os::unix::fs::chown(&manifest, Some(uid), None).expect("chown the manifest");
        std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(file_mode))
            .expect("chmod the manifest");
        let mut command = install_sh(&destdir, &["--prefix", PREFIX, "--uninstall"]);
        let what = format!("the manifest's owner {uid} and mode {file_mode:o}");
        assert_refused(
            &mut command,
            "refusing to remove the files it lists",
            &destdir,
            &before,
            &what,
        );
    }
}

/// The example file documents every setting: each rossipd flag has a
/// commented-out key (`#key = value`), each such key is a flag, and with
/// every key uncommented the file still passes --check-config.
#[test]
fn example_config_covers_every_flag_and_checks() {
    let example = repo().join("systemd/rossipd.toml.example");
    let text = read(&example);
    let keys: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix('#')?.split_once(" = ").map(|(k, _)| k))
        .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_owned)
        .collect();
    let rossipd = bins::rossipd();
    let help = run_ok(rossipd_command(&rossipd).arg("--help"));
    let flags: BTreeSet<String> = help
        .lines()
        .filter_map(|line| {
            // clap indents option lines by 2 (`-c, --channel <X>`) or 6
            // (`--name <NAME>`); wrapped descriptions by more.
            let trimmed = line.trim_start();
            if line.len() - trimmed.len() > 6 {
                return None;
            }
            let line = trimmed;
            let line = match line.as_bytes() {
                [b'-', c, b',', b' ', ..] if c.is_ascii_alphanumeric() => &line[4..],
                _ => line,
            };
            let flag = line.strip_prefix("--")?.split_whitespace().next()?;
            let name = flag.chars().all(|c| c.is_ascii_lowercase() || c == '-');
            name.then(|| flag.to_owned())
        })
        .filter(|flag| !NOT_SETTINGS.contains(&flag.as_str()))
        .collect();
    for flag in &flags {
        assert!(
            keys.contains(&flag.replace('-', "_")),
            "--{flag} has no `#{} = …` line in {}",
            flag.replace('-', "_"),
            example.display()
        );
    }
    for key in &keys {
        assert!(
            flags.contains(&key.replace('_', "-")),
            "{}: key {key} is not a rossipd flag ({flags:?})",
            example.display()
        );
    }

    let tmp = tempfile::tempdir().expect("temp dir");
    let all_set = tmp.path().join("rossipd.toml");
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| keys.contains(k)) =>
            {
                rest
            }
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&all_set, uncommented).expect("write the uncommented config");
    for config in [&example, &all_set] {
        let checked = run_ok(
            rossipd_command(&rossipd)
                .arg("--check-config")
                .arg("--config")
                .arg(config),
        );
        assert!(checked.starts_with("config ok:"), "{checked}");
    }
}
