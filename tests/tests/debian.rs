//! The Debian package: the postinst with stand-in systemd tools, and the
//! package `systemd/build-deb.sh` makes with cargo-deb (contents, control
//! fields, maintainer scripts, the staging lock). The package test needs
//! `cargo deb` and `dpkg-deb`: without them it passes with a notice, except
//! with `CI=true`, where it fails. (`systemd/check-in-container.sh` installs
//! the package under a real systemd; it is not run here.)

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Duration;

use rossip_tests::background::Background;
use rossip_tests::sys::{self, describe, mode, output, read, repo, run_ok};
use rossip_tests::{bins, wait};

/// The Debian postinst, run with stand-ins for the systemd tools that log
/// their arguments: DPKG_ROOT (with a space and a glob character) is one
/// `--root=` argument, and a failing systemd-tmpfiles is reported on stderr
/// without failing the installation.
#[test]
fn postinst_passes_dpkg_root_and_reports_tmpfiles_failures() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let fake_bin = tmp.path().join("bin");
    std::fs::create_dir_all(&fake_bin).expect("create the stand-ins' dir");
    let log = tmp.path().join("calls.log");
    for (tool, status) in [
        ("systemd-sysusers", 0),
        ("systemd-tmpfiles", 1),
        ("install", 0),
    ] {
        let script = fake_bin.join(tool);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n{{ printf '%s' '{tool}'; printf ' [%s]' \"$@\"; echo; }} >>\"$CALLS_LOG\"\nexit {status}\n"
            ),
        )
        .expect("write a stand-in");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod a stand-in");
    }
    let dpkg_root = tmp.path().join("dpkg root*");
    std::fs::create_dir_all(&dpkg_root).expect("create the DPKG_ROOT");
    let path = format!(
        "{}:{}",
        fake_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("sh");
    command
        .arg(repo().join("systemd/debian/postinst"))
        .arg("configure")
        .current_dir(tmp.path())
        .env("PATH", path)
        .env("CALLS_LOG", &log)
        .env("DPKG_ROOT", &dpkg_root);
    let out = output(&mut command);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}):\n{stderr}",
        describe(&command),
        out.status
    );
    let calls = read(&log);
    let root_arg = format!("[--root={}]", dpkg_root.display());
    assert!(
        calls.contains(&format!(
            "systemd-sysusers {root_arg} [/usr/lib/sysusers.d/rossip.conf]\n"
        )),
        "{calls}"
    );
    assert!(
        calls.contains(&format!(
            "systemd-tmpfiles {root_arg} [--create] [/usr/lib/tmpfiles.d/rossip.conf]\n"
        )),
        "tmpfiles.d applied inside DPKG_ROOT, not on this system:\n{calls}"
    );
    assert!(
        stderr.contains("warning: systemd-tmpfiles") && stderr.contains("failed"),
        "a failing systemd-tmpfiles is reported:\n{stderr}"
    );
}

/// A tool the deb test needs, or `None` (after a notice) outside CI.
fn deb_tool_missing(found: bool, what: &str, install: &str) -> bool {
    if found {
        return false;
    }
    assert!(!sys::ci(), "{what} is required with CI=true ({install})");
    sys::skipped(
        "debian_package_has_the_files_and_scripts",
        &format!("{what} is not installed ({install})"),
    );
    true
}

#[test]
fn debian_package_has_the_files_and_scripts() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let has_cargo_deb = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if deb_tool_missing(
        has_cargo_deb,
        "cargo-deb",
        "cargo install cargo-deb --locked",
    ) || deb_tool_missing(
        sys::find_program("dpkg-deb").is_some(),
        "dpkg-deb",
        "apt-get install dpkg",
    ) {
        return;
    }
    bins::rossipd();
    bins::rossipctl();
    // Package the binaries of this test's own profile: no build here.
    let profile_dir = bins::target_profile_dir();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let target_dir = profile_dir.parent().expect("the target directory");
    let tmp = tempfile::tempdir().expect("temp dir");
    // The staging tree target/assets is shared by every run: build-deb.sh
    // waits while another holds target/assets.lock (here, this test).
    std::fs::create_dir_all(repo().join("target")).expect("create target/");
    let lock_path = repo().join("target/assets.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("open {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    let tmp_arg = tmp.path().to_string_lossy().into_owned();
    let target_arg = format!("CARGO_TARGET_DIR={}", target_dir.display());
    let script = repo().join("systemd/build-deb.sh");
    let script_arg = script.to_string_lossy().into_owned();
    let mut build = Background::spawn(
        "env",
        &[
            target_arg.as_str(),
            "bash",
            &script_arg,
            "--profile",
            &profile,
            "--no-build",
            "--output",
            &tmp_arg,
            "--",
            "--fast",
        ],
    );
    build.wait_for_line(
        Duration::from_secs(120),
        "that it waits for target/assets.lock",
        |l| l.contains("waiting for") && l.contains("assets.lock"),
    );
    assert!(
        build.lines().iter().all(|l| !l.contains("packaging:")),
        "build-deb.sh went on packaging while the lock was held:\n{}",
        build.lines().join("\n")
    );
    lock.unlock()
        .unwrap_or_else(|e| panic!("unlock {}: {e}", lock_path.display()));
    let status = wait::wait_until(Duration::from_secs(600), "build-deb.sh to finish", || {
        build.exited()
    });
    assert!(
        status.success(),
        "`{}` failed ({status}):\nstdout:\n{}\nstderr:\n{}",
        build.command(),
        build.lines().join("\n"),
        build.stderr_lines().join("\n")
    );
    let deb = std::fs::read_dir(tmp.path())
        .expect("the output dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("build-deb.sh made a .deb");

    let field = |name: &str| {
        run_ok(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name))
            .trim()
            .to_owned()
    };
    assert_eq!(field("Package"), "rossip");
    let depends = field("Depends");
    assert!(
        depends.contains("libc6"),
        "computed dependencies: {depends}"
    );
    assert!(depends.contains("systemd"), "systemd-sysusers: {depends}");

    let contents = run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "./usr/bin/rossipd",
        "./usr/bin/rossipctl",
        "./usr/lib/systemd/system/rossipd.service",
        "./usr/lib/systemd/user/rossipd.service",
        "./usr/lib/sysusers.d/rossip.conf",
        "./usr/lib/tmpfiles.d/rossip.conf",
        "./usr/share/bash-completion/completions/rossipctl",
        "./usr/share/zsh/vendor-completions/_rossipctl",
        "./usr/share/fish/vendor_completions.d/rossipctl.fish",
        "./usr/share/man/man1/rossipctl.1.gz",
        "./usr/share/man/man1/rossipctl-keys-install.1.gz",
        "./usr/share/man/man8/rossipd.8.gz",
        "./usr/share/doc/rossip/README.md",
        "./usr/share/doc/rossip/SECURITY.md",
        "./usr/share/doc/rossip/rossipd.toml.example",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} missing from the package:\n{contents}"
        );
    }

    // The packaged unit is the repository's (ExecStart=/usr/bin/rossipd).
    let tree = tmp.path().join("tree");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree));
    let unit = read(&tree.join("usr/lib/systemd/system/rossipd.service"));
    assert_eq!(unit, read(&repo().join("systemd/rossipd.service")));
    let version = run_ok(Command::new(tree.join("usr/bin/rossipctl")).arg("--version"));
    assert!(version.starts_with("rossipctl "), "{version}");

    let control = tmp.path().join("control");
    run_ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let postinst = read(&control.join("postinst"));
    assert!(
        !postinst.contains("#DEBHELPER#"),
        "token replaced:\n{postinst}"
    );
    let sysusers = postinst
        .find("systemd-sysusers")
        .unwrap_or_else(|| panic!("postinst creates the rossip user:\n{postinst}"));
    let enable = postinst
        .find("deb-systemd-helper enable rossipd.service")
        .unwrap_or_else(|| panic!("postinst enables the unit:\n{postinst}"));
    let start = postinst
        .find("deb-systemd-invoke $_dh_action rossipd.service")
        .unwrap_or_else(|| panic!("postinst starts the unit:\n{postinst}"));
    assert!(sysusers < enable && enable < start, "order:\n{postinst}");
    assert!(
        postinst.contains("_dh_action=restart") && postinst.contains("_dh_action=start"),
        "start on install, restart on upgrade:\n{postinst}"
    );
    let prerm = read(&control.join("prerm"));
    assert!(
        prerm.contains("deb-systemd-invoke stop rossipd.service")
            && prerm.contains("\"$1\" = remove"),
        "prerm stops the service on removal only (not on upgrade):\n{prerm}"
    );
    let postrm = read(&control.join("postrm"));
    assert!(
        postrm.contains("deb-systemd-helper purge rossipd.service")
            && postrm
                .contains("rm -rf \"${DPKG_ROOT:-}/var/lib/rossip\" \"${DPKG_ROOT:-}/etc/rossip\""),
        "{postrm}"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        assert_eq!(mode(&path) & 0o111, 0o111, "{script} executable");
        // dpkg runs them with /bin/sh: a syntax error fails every upgrade and removal.
        let check = output(Command::new("sh").arg("-n").arg(&path));
        assert!(
            check.status.success(),
            "sh -n {script}: {}\n{}",
            String::from_utf8_lossy(&check.stderr),
            read(&path)
        );
    }
}
