//! The config file, through a real `rossipd --check-config`: precedence
//! (file < environment < flag), errors naming the file, line and key, and
//! the default path under XDG_CONFIG_HOME.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temp directory of this test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("rossipd-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create config dir");
        }
        std::fs::write(&path, text).expect("write config file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `rossipd --check-config` with no ROSSIP_* variables and no config
/// variables from the environment of the test run, and the user file
/// looked up under `dir`.
fn check_config(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rossipd"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ROSSIP_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .env("XDG_STATE_HOME", dir.join("state"))
        .arg("--check-config");
    cmd
}

/// [`check_config`] reading `file`.
fn with_config(dir: &TempDir, file: &Path) -> Command {
    let mut cmd = check_config(&dir.0);
    cmd.arg("--config").arg(file);
    cmd
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run rossipd --check-config");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn flags_beat_environment_beats_file_beats_defaults() {
    let dir = TempDir::new("precedence");
    let file = dir.write(
        "rossipd.toml",
        "port = 1111\ncluster = \"from-file\"\nname = \"file-name\"\nhistory_max_age = \"2d\"\n\
         join = [\"a:7465\", \"b\"]\nno_mdns = true\nlog_level = \"debug\"\n",
    );
    let cmd = |dir: &TempDir| with_config(dir, &file);
    let (out, stdout, stderr) = run(&mut cmd(&dir));
    assert!(out.status.success(), "file only: {stderr}");
    for want in [
        "port=1111",
        "cluster=from-file",
        "name=file-name",
        "history_max_age=2days",
        "join=[a:7465,b]",
        "no_mdns=true",
        "log_level=debug",
        // Not in the file: the default.
        "reap_after=1h",
    ] {
        assert!(stdout.contains(want), "file only: no {want} in {stdout}");
    }
    assert!(
        stdout.contains(&format!("file={}", file.display())),
        "{stdout}"
    );

    let (out, stdout, stderr) = run(cmd(&dir)
        .env("ROSSIP_PORT", "2222")
        .env("ROSSIP_CLUSTER", "from-env")
        .env("ROSSIP_NO_MDNS", "false"));
    assert!(out.status.success(), "env: {stderr}");
    for want in [
        "port=2222",
        "cluster=from-env",
        "name=file-name",
        "no_mdns=false",
    ] {
        assert!(
            stdout.contains(want),
            "env over file: no {want} in {stdout}"
        );
    }

    let (out, stdout, stderr) = run(cmd(&dir)
        .env("ROSSIP_PORT", "2222")
        .env("ROSSIP_CLUSTER", "from-env")
        .args(["--port", "3333", "--join", "c:1"]));
    assert!(out.status.success(), "flags: {stderr}");
    for want in ["port=3333", "cluster=from-env", "join=[c:1]"] {
        assert!(
            stdout.contains(want),
            "flag over env: no {want} in {stdout}"
        );
    }
}

#[test]
fn an_unknown_key_names_the_file_line_and_key() {
    let dir = TempDir::new("unknown");
    let file = dir.write("rossipd.toml", "port = 1111\n\nbogus_key = 3\n");
    let (out, _, stderr) = run(check_config(&dir.0).arg("--config").arg(&file));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let want = format!("{}, line 3, key `bogus_key`", file.display());
    assert!(stderr.contains(&want), "no {want:?} in {stderr}");
}

#[test]
fn a_bad_value_names_the_file_line_and_key() {
    let dir = TempDir::new("bad-value");
    for (text, line, key) in [
        ("port = 1\nreap_after = \"500ms\"\n", 2, "reap_after"),
        ("\n\nport = \"many\"\n", 3, "port"),
        ("history = 0\n", 1, "history"),
        ("bind = \"not-an-address\"\n", 1, "bind"),
        ("history_max_age = \"soon\"\n", 1, "history_max_age"),
    ] {
        let file = dir.write("rossipd.toml", text);
        let (out, stdout, stderr) = run(check_config(&dir.0).arg("--config").arg(&file));
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stdout}{stderr}");
        let want = format!("{}, line {line}, key `{key}`", file.display());
        assert!(stderr.contains(&want), "{text:?}: no {want:?} in {stderr}");
    }
    // Checked after the merge, as the daemon would at start.
    let file = dir.write("rossipd.toml", "cluster = \"no spaces\"\n");
    let (out, _, stderr) = run(check_config(&dir.0).arg("--config").arg(&file));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 1, key `cluster`"), "{stderr}");
    assert!(stderr.contains("cluster label"), "{stderr}");
    assert!(
        !stderr.contains("channel"),
        "a cluster label is no channel: {stderr}"
    );
}

/// A bad value names where it came from: the variable (not its flag), the
/// flag, or the file's line and key; and a good flag overrides a bad
/// variable.
#[test]
fn a_bad_value_names_its_variable_flag_or_key() {
    let dir = TempDir::new("sources");
    let empty = dir.write("empty.toml", "");
    for (variable, value, reason) in [
        ("ROSSIP_PORT", "abc", "invalid digit"),
        ("ROSSIP_CLUSTER", "two words", "cluster label"),
        ("ROSSIP_HISTORY", "0", "at least 1"),
        ("ROSSIP_MAX_MESSAGE_BYTES", "2000000", "at most 983040"),
        ("ROSSIP_LOG_LEVEL", "zz=[", "level"),
        ("ROSSIP_NO_MDNS", "maybe", "true, false"),
    ] {
        let flag = format!(
            "--{}",
            variable
                .trim_start_matches("ROSSIP_")
                .to_lowercase()
                .replace('_', "-")
        );
        let (out, _, stderr) = run(with_config(&dir, &empty).env(variable, value));
        assert_eq!(out.status.code(), Some(2), "{variable}={value}: {stderr}");
        assert!(
            stderr.contains(&format!("environment variable {variable}")),
            "{variable}={value}: the error does not name the variable: {stderr}"
        );
        assert!(
            !stderr.contains(&flag),
            "{variable}={value}: blames {flag}: {stderr}"
        );
        assert!(stderr.contains(reason), "{variable}={value}: {stderr}");
        assert!(!stderr.contains("channel"), "{stderr}");
    }
    // The flag's own bad value is the flag's.
    let (out, _, stderr) = run(with_config(&dir, &empty)
        .env("ROSSIP_PORT", "7000")
        .args(["--port", "abc"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--port"), "{stderr}");
    assert!(!stderr.contains("ROSSIP_PORT"), "{stderr}");
    // A good flag beats a bad variable: clap never reads it.
    let (out, stdout, stderr) = run(with_config(&dir, &empty)
        .env("ROSSIP_PORT", "abc")
        .args(["--port", "7001"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("port=7001"), "{stdout}");
    // The file: its line and key.
    let file = dir.write("bad.toml", "\nport = \"abc\"\n");
    let (out, _, stderr) = run(&mut with_config(&dir, &file));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2, key `port`"), "{stderr}");
}

#[test]
fn a_named_config_file_must_exist() {
    let dir = TempDir::new("missing");
    let missing = dir.0.join("nowhere.toml");
    let (out, _, stderr) = run(check_config(&dir.0).arg("--config").arg(&missing));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&missing.display().to_string()),
        "the error does not name the file: {stderr}"
    );
}

#[test]
fn the_user_file_under_xdg_config_home_is_read_and_may_be_missing() {
    let dir = TempDir::new("xdg");
    let (out, stdout, stderr) = run(&mut check_config(&dir.0));
    assert!(out.status.success(), "no file at all is fine: {stderr}");
    assert!(stdout.contains("file=none"), "{stdout}");
    assert!(stdout.contains("port=7465"), "{stdout}");

    let file = dir.write("xdg/rossip/rossipd.toml", "port = 4444\niface = [\"lo\"]\n");
    let (out, stdout, stderr) = run(&mut check_config(&dir.0));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("port=4444"), "{stdout}");
    assert!(stdout.contains("iface=[lo]"), "{stdout}");
    assert!(
        stdout.contains(&format!("file={}", file.display())),
        "{stdout}"
    );
}

#[test]
fn the_background_keys_follow_the_same_precedence_and_exclude_each_other() {
    let dir = TempDir::new("background");
    let file = dir.write(
        "rossipd.toml",
        "daemonize = true\npid_file = \"/run/r.pid\"\nsyslog = true\n",
    );
    let cmd = |dir: &TempDir| with_config(dir, &file);
    let (out, stdout, stderr) = run(&mut cmd(&dir));
    assert!(out.status.success(), "file only: {stderr}");
    for want in [
        "daemonize=true",
        "pid_file=/run/r.pid",
        "syslog=true",
        "log_file=none",
    ] {
        assert!(stdout.contains(want), "file only: no {want} in {stdout}");
    }

    // A log file from a flag replaces the file's syslog; a relative one is
    // taken from the current directory.
    let (out, stdout, stderr) = run(cmd(&dir)
        .current_dir(&dir.0)
        .env("ROSSIP_DAEMONIZE", "false")
        .args(["--log-file", "d.log"]));
    assert!(out.status.success(), "flags: {stderr}");
    let log = dir.0.join("d.log");
    for want in [
        "daemonize=false".to_owned(),
        "syslog=false".to_owned(),
        format!("log_file={}", log.display()),
    ] {
        assert!(stdout.contains(&want), "flags: no {want} in {stdout}");
    }

    let both = dir.write(
        "both.toml",
        "syslog = true\nlog_file = \"/var/log/r.log\"\n",
    );
    let (out, _, stderr) = run(check_config(&dir.0).arg("--config").arg(&both));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&both.display().to_string()) && stderr.contains("exclude each other"),
        "{stderr}"
    );
}

#[test]
fn the_log_destination_goes_to_the_highest_source() {
    let dir = TempDir::new("log-destination");
    let file = dir.write("rossipd.toml", "log_file = \"/var/log/from-file.log\"\n");
    let cmd = |dir: &TempDir| with_config(dir, &file);
    // A variable that turns syslog off does not discard the file's log file.
    let (out, stdout, stderr) = run(cmd(&dir).env("ROSSIP_SYSLOG", "false"));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("log_file=/var/log/from-file.log") && stdout.contains("syslog=false"),
        "{stdout}"
    );
    // A flag beats a variable for the other destination (no usage error).
    let (out, stdout, stderr) = run(cmd(&dir)
        .env("ROSSIP_LOG_FILE", "/var/log/from-env.log")
        .arg("--syslog"));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("log_file=none") && stdout.contains("syslog=true"),
        "{stdout}"
    );
    let (out, stdout, stderr) = run(cmd(&dir)
        .env("ROSSIP_SYSLOG", "true")
        .args(["--log-file", "/var/log/from-flag.log"]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("log_file=/var/log/from-flag.log") && stdout.contains("syslog=false"),
        "{stdout}"
    );
    // Both from the same source exclude each other, said by that source.
    let (out, _, stderr) = run(cmd(&dir).args(["--syslog", "--log-file", "/x.log"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--log-file and --syslog exclude each other"),
        "{stderr}"
    );
}

/// Without XDG_RUNTIME_DIR (su, sudo -u, cron) the socket goes under /tmp,
/// and with an empty one too; never to /run/user/UID, which logind deletes
/// at the user's last logout (whether that directory exists here or not).
#[test]
fn without_xdg_runtime_dir_the_socket_goes_to_tmp() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = TempDir::new("no-runtime-dir");
    let uid = std::fs::metadata("/proc/self").expect("stat").uid();
    let expected = format!(" socket=/tmp/rossip-{uid}/rossipd.sock ");
    for runtime in [None, Some("")] {
        let mut cmd = check_config(&dir.0);
        match runtime {
            Some(value) => cmd.env("XDG_RUNTIME_DIR", value),
            None => cmd.env_remove("XDG_RUNTIME_DIR"),
        };
        let (out, stdout, stderr) = run(&mut cmd);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stdout.contains(&expected),
            "XDG_RUNTIME_DIR {runtime:?}: {stdout}"
        );
    }
}
