//! Process and command helpers, without unsafe code: signals go through the
//! `kill` program (procps), identities and memory through `/proc`.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Writes one line straight to the process's stderr. libtest captures
/// `println!`/`eprintln!` of passing tests; figures the issue report needs
/// (e.g. discovery time) and skip notices must show in a plain `cargo test`.
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    // Nothing useful to do if stderr is gone.
    let _ = writeln!(err, "{line}");
}

/// Says that test `test` returns without running, and why: this machine
/// lacks something it needs (root, a program). libtest counts such a test as
/// passed; `.ci/run` finds this line (`test skipped: NAME: why`) and counts
/// it as skipped instead, so keep its shape.
pub fn skipped(test: &str, why: &str) {
    say(&format!("test skipped: {test}: {why}"));
}

/// Whether `CI=true`: multi-host tests are then mandatory.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The effective uid, from the `Uid:` line of `/proc/self/status`.
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Puts the program `src` at `dst` (a directory another user can reach, for
/// tests that run it as that user): a hard link where one can be made, a
/// copy only across file systems. A copy holds the new file open for
/// writing, and a process that another test thread forks meanwhile inherits
/// that descriptor until it execs, so running the copy can fail with
/// ETXTBSY ("Text file busy"); a link writes nothing.
pub fn place_program(src: &Path, dst: &Path) -> std::io::Result<()> {
    if std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    std::fs::copy(src, dst).map(|_| ())
}

/// Finds a program in `PATH`, then in the sbin directories a non-login
/// shell may leave out of it.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A command line as one printable string, for failure messages.
pub fn command_line<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S]) -> String {
    std::iter::once(program.as_ref())
        .chain(args.iter().map(AsRef::as_ref))
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The program and arguments that run `program args…`, inside network
/// namespace `netns` when given (`ip netns exec NS program args…`, which
/// execs the program in place, so the child's PID is the program's).
pub fn in_netns(
    netns: Option<&str>,
    program: PathBuf,
    args: Vec<OsString>,
) -> (OsString, Vec<OsString>) {
    match netns {
        Some(ns) => {
            let ip = find_program("ip").expect("`ip` (iproute2) is needed for netns");
            let mut full: Vec<OsString> = vec!["netns".into(), "exec".into(), ns.into()];
            full.push(program.into());
            full.extend(args);
            (ip.into_os_string(), full)
        }
        None => (program.into_os_string(), args),
    }
}

/// The program and arguments that run `program args…` inside network
/// namespace `ns` through `nsenter --net=/run/netns/NS`, which only enters
/// the namespace. `ip netns exec` (see [`in_netns`]) also remounts `/sys`
/// for the namespace, some milliseconds per call, which would dominate a
/// figure such as one CLI call's wall time.
pub fn nsenter_net(ns: &str, program: PathBuf, args: Vec<OsString>) -> (OsString, Vec<OsString>) {
    let nsenter = find_program("nsenter").expect("`nsenter` (util-linux) is needed");
    let mut full: Vec<OsString> = vec![format!("--net=/run/netns/{ns}").into(), program.into()];
    full.extend(args);
    (nsenter.into_os_string(), full)
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Runs a short command to completion; `Err` describes the command, its exit
/// status and stderr.
pub fn run<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S]) -> Result<Output, String> {
    run_with_stdin(program, args, None)
}

/// Runs a short command with `stdin` fed from a string.
pub fn run_with_stdin<S: AsRef<OsStr>>(
    program: impl AsRef<OsStr>,
    args: &[S],
    stdin: Option<&str>,
) -> Result<Output, String> {
    let line = command_line(&program, args);
    let mut cmd = Command::new(&program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("`{line}`: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("`{line}`: writing stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`{line}`: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Sends a signal (`TERM`, `KILL`, …) to a process by PID. `Err` when the
/// process does not exist (any more) or the signal was refused.
pub fn signal(pid: u32, name: &str) -> Result<(), String> {
    let kill = find_program("kill").ok_or("`kill` not found (install procps)")?;
    run(kill, &["-s", name, &pid.to_string()]).map(drop)
}

/// Every descendant of process `pid` (children, their children, …), from
/// `/proc/PID/task/TID/children`; read before the parent is killed, since
/// orphans are re-parented and can no longer be found this way.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if !found.contains(&child) {
                    found.push(child);
                    queue.push(child);
                }
            }
        }
    }
    found
}

/// Kills `child` and every process it started (SIGKILL, by PID), and reaps it.
/// For helpers that start processes of their own (a browser, socat with
/// `fork`), whose leftovers must not outlive the test.
pub fn kill_tree(child: &mut std::process::Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let descendants = descendants(child.id());
    let _ = child.kill();
    for pid in descendants {
        // Gone already, most likely: nothing else to do about it.
        let _ = signal(pid, "KILL");
    }
    let _ = child.wait();
}

/// Whether a process exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Resident memory of a process in KiB (`VmRSS` of `/proc/PID/status`).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time a process has used so far, user and system together (`utime`
/// and `stime` of `/proc/PID/stat`, in clock ticks of usually 10 ms).
pub fn cpu_time(pid: u32) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may hold spaces):
    // state is field 3, utime 14 and stime 15, counted from 1.
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second();
    Some(std::time::Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

/// The last `n` lines of a text file (empty if it cannot be read).
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The workspace's root directory (the tests crate sits in it).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// Runs `command`; panics with the command line and its output unless it
/// succeeds. Returns stdout.
pub fn run_ok(command: &mut Command) -> String {
    let out = output(command);
    assert!(
        out.status.success(),
        "{} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        describe(command),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `command` to its end; panics (naming it) if it cannot start.
pub fn output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe(command)))
}

/// `command` as a shell line, with the variables it sets, for failures.
pub fn describe(command: &Command) -> String {
    let args: Vec<_> = command.get_args().collect();
    let envs: Vec<String> = command
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    let line = command_line(command.get_program(), &args);
    if envs.is_empty() {
        line
    } else {
        format!("{} {line}", envs.join(" "))
    }
}

/// The permission bits of `path` (panics if it does not exist).
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{} should exist: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The text of `path` (panics if it cannot be read).
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
