//! Where to find rossipd when `--socket` and `ROSSIP_SOCKET` are not given.
//!
//! A daemon's socket depends on the environment it was started in: a user's daemon puts it in
//! `$XDG_RUNTIME_DIR` (in a login session, `/run/user/UID`), or without that variable in
//! `/tmp/rossip-UID`; the system service in `/run/rossip`. `su`, `sudo -u` and cron drop
//! `XDG_RUNTIME_DIR`, so the CLI cannot know which place its daemon chose: it tries every
//! place in order ([`candidates`]) and talks to the first one a daemon answers on. A stale
//! socket file is passed over like a missing one, and so is a daemon run by another user
//! ([`trusted_server`]): `/tmp/rossip-UID` can be made by anyone. When no daemon answers, the
//! error names every place and what was there.

use std::io;
use std::path::{Path, PathBuf};

use rossip_proto::paths;

use crate::client::{Client, ClientError, SearchedSocket};

/// For tests only: a directory that stands in for `/` in the fixed places
/// ([`paths::fixed_socket_candidates`]: `/run/user/UID/…`, `/tmp/rossip-UID/…`,
/// `/run/rossip/…`), so that a test can put a daemon where the search looks without touching
/// the machine's real directories or racing other tests. `$XDG_RUNTIME_DIR` is not moved.
pub const TEST_ROOT_ENV: &str = "ROSSIPCTL_TEST_ROOT";

/// Which daemon to talk to.
#[derive(Debug, Clone)]
pub enum SocketLocation {
    /// `--socket` or `ROSSIP_SOCKET`: that path and no other, whoever serves it (the user
    /// chose it).
    Given(PathBuf),
    /// The default places, tried in order.
    Search(Vec<Place>),
}

/// A default place to look for the daemon, and whose daemon may serve it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The socket path.
    pub path: PathBuf,
    /// Whose place it is.
    pub kind: PlaceKind,
}

/// Whose daemon belongs at a place, which decides whose daemon is trusted there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceKind {
    /// One of this user's places (`$XDG_RUNTIME_DIR`, `/run/user/UID`, `/tmp/rossip-UID`):
    /// this user's daemon, or root's.
    User,
    /// The system service's socket (`/run/rossip`): root's daemon, this user's, or that of the
    /// user owning the socket's directory (systemd makes `RuntimeDirectory=` for the
    /// service's `User=`, `rossip` in rossipd.service).
    System,
}

impl SocketLocation {
    /// The path the user gave, else the default places for this user and environment.
    pub fn new(given: Option<PathBuf>) -> SocketLocation {
        match given {
            Some(path) => SocketLocation::Given(path),
            None => {
                let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
                let root = std::env::var_os(TEST_ROOT_ENV).map(PathBuf::from);
                SocketLocation::Search(candidates(xdg.as_deref(), current_uid(), root.as_deref()))
            }
        }
    }

    /// Connects to the given socket, or to the first default place a daemon this user may
    /// trust answers on.
    pub fn connect(&self) -> Result<Client, ClientError> {
        match self {
            SocketLocation::Given(path) => Client::connect(path),
            SocketLocation::Search(places) => first_answering(places, |place| {
                refuse_planted_directory(&place.path)?;
                let client = Client::connect(&place.path)?;
                refuse_foreign_server(place, &client)?;
                Ok(client)
            }),
        }
    }
}

/// The places to look, in order: `$XDG_RUNTIME_DIR/rossip/rossipd.sock` when the variable is
/// set, then [`paths::fixed_socket_candidates`] (under `root` in tests), without repeats.
fn candidates(xdg_runtime_dir: Option<&Path>, uid: u32, root: Option<&Path>) -> Vec<Place> {
    let mut places: Vec<Place> = xdg_runtime_dir
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| Place {
            path: paths::user_socket_path(Some(dir), uid),
            kind: PlaceKind::User,
        })
        .into_iter()
        .collect();
    for fixed in paths::fixed_socket_candidates(uid) {
        let kind = if fixed == Path::new(paths::SYSTEM_SOCKET_PATH) {
            PlaceKind::System
        } else {
            PlaceKind::User
        };
        let path = match root.filter(|root| !root.as_os_str().is_empty()) {
            Some(root) => root.join(fixed.strip_prefix("/").unwrap_or(&fixed)),
            None => fixed,
        };
        if !places.iter().any(|place| place.path == path) {
            places.push(Place { path, kind });
        }
    }
    places
}

/// The first of `places` that `connect` reaches. When none answers: a permission problem if
/// there was one (a daemon is there, and the hint says how to get in: this is also why a
/// path we may not even look at, such as `/run/rossip` mode 0750, is tried rather than
/// skipped), else the list of every place and what was there.
fn first_answering<T>(
    places: &[Place],
    mut connect: impl FnMut(&Place) -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    let mut searched = Vec::with_capacity(places.len());
    let mut denied = None;
    for place in places {
        match connect(place) {
            Ok(found) => return Ok(found),
            Err(ClientError::Unreachable { path, error }) => {
                searched.push(SearchedSocket { path, error });
            }
            Err(err @ ClientError::PermissionDenied { .. }) => {
                denied.get_or_insert(err);
            }
            Err(other) => return Err(other),
        }
    }
    Err(denied.unwrap_or(ClientError::NotFound { searched }))
}

/// Refuses a socket whose directory sits in a world-writable directory (`/tmp`) and belongs
/// to another user, or is a symbolic link: anyone may create `/tmp/rossip-UID` first and
/// listen there, and would then read what this user sends. rossipd refuses such a directory
/// for the same reason. A first filter, with the clearer message: the check and the
/// connection are separate steps, so [`refuse_foreign_server`] decides after connecting.
#[cfg(unix)]
fn refuse_planted_directory(socket: &Path) -> Result<(), ClientError> {
    use std::os::unix::fs::MetadataExt as _;
    let Some(dir) = socket.parent() else {
        return Ok(());
    };
    let in_shared_dir = dir
        .parent()
        .and_then(|parent| std::fs::metadata(parent).ok())
        .is_some_and(|m| m.mode() & 0o002 != 0);
    if !in_shared_dir {
        return Ok(());
    }
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        // Missing: the connection attempt says so.
        return Ok(());
    };
    let me = current_uid();
    let problem = if meta.file_type().is_symlink() {
        "is a symbolic link".to_owned()
    } else if meta.uid() != me && meta.uid() != 0 {
        format!("belongs to uid {}, not to this user (uid {me})", meta.uid())
    } else {
        return Ok(());
    };
    Err(ClientError::Unreachable {
        path: socket.to_path_buf(),
        error: io::Error::other(format!("not used: {} {problem}", dir.display())),
    })
}

#[cfg(not(unix))]
fn refuse_planted_directory(_socket: &Path) -> Result<(), ClientError> {
    Ok(())
}

/// Whether a daemon running as `server` may be talked to at `place` by user `me`:
/// `service_user` is the owner of the system socket's directory (None if unknown). The
/// directory checks cannot settle this: another user may make `/tmp/rossip-UID` and listen
/// there between them and the connection, and would then read what this user sends.
fn trusted_server(kind: PlaceKind, server: u32, me: u32, service_user: Option<u32>) -> bool {
    server == me || server == 0 || (kind == PlaceKind::System && service_user == Some(server))
}

/// Passes over a searched place whose daemon runs as a user [`trusted_server`] refuses,
/// before anything is sent to it.
#[cfg(unix)]
fn refuse_foreign_server(place: &Place, client: &Client) -> Result<(), ClientError> {
    use std::os::unix::fs::MetadataExt as _;
    let passed_over = |why: String| ClientError::Unreachable {
        path: place.path.clone(),
        error: io::Error::other(why),
    };
    let server = client
        .server_uid()
        .map_err(|e| passed_over(format!("cannot tell who serves it ({e}): passed over")))?;
    let service_user = match place.kind {
        PlaceKind::System => place
            .path
            .parent()
            .and_then(|dir| std::fs::metadata(dir).ok())
            .map(|m| m.uid()),
        PlaceKind::User => None,
    };
    if trusted_server(place.kind, server, current_uid(), service_user) {
        Ok(())
    } else {
        Err(passed_over(format!(
            "served by uid {server}, not you: passed over"
        )))
    }
}

#[cfg(not(unix))]
fn refuse_foreign_server(_place: &Place, _client: &Client) -> Result<(), ClientError> {
    Ok(())
}

/// The effective user id (as rossipd uses it), which names the per-user places `/run/user/UID` and `/tmp/rossip-UID`.
#[cfg(unix)]
pub fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Without Unix users the uid only names a fallback path; 0 is as good as any.
#[cfg(not(unix))]
pub fn current_uid() -> u32 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable(path: &Path, kind: io::ErrorKind) -> ClientError {
        ClientError::Unreachable {
            path: path.to_path_buf(),
            error: kind.into(),
        }
    }

    /// The paths of `places`, in order.
    fn paths_of(places: &[Place]) -> Vec<PathBuf> {
        places.iter().map(|place| place.path.clone()).collect()
    }

    #[test]
    fn xdg_first_then_every_fixed_place() {
        let places = candidates(Some(Path::new("/x")), 1000, None);
        assert_eq!(
            paths_of(&places),
            [
                "/x/rossip/rossipd.sock",
                "/run/user/1000/rossip/rossipd.sock",
                "/tmp/rossip-1000/rossipd.sock",
                "/run/rossip/rossipd.sock",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn an_xdg_dir_that_is_run_user_is_tried_once() {
        let places = candidates(Some(Path::new("/run/user/7")), 7, None);
        assert_eq!(places.len(), 3, "{places:?}");
        let places = candidates(None, 7, None);
        assert_eq!(
            places[0].path,
            PathBuf::from("/run/user/7/rossip/rossipd.sock")
        );
        assert_eq!(candidates(Some(Path::new("")), 7, None), places);
    }

    #[test]
    fn the_test_root_moves_the_fixed_places_only() {
        let places = candidates(Some(Path::new("/x")), 5, Some(Path::new("/t")));
        assert_eq!(
            paths_of(&places),
            [
                "/x/rossip/rossipd.sock",
                "/t/run/user/5/rossip/rossipd.sock",
                "/t/tmp/rossip-5/rossipd.sock",
                "/t/run/rossip/rossipd.sock",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn the_first_place_that_answers_wins() {
        let places = candidates(None, 1, None);
        let found = first_answering(&places, |place| {
            if place == &places[1] {
                Ok(place.path.clone())
            } else {
                Err(unreachable(&place.path, io::ErrorKind::ConnectionRefused))
            }
        });
        assert_eq!(found.expect("found"), places[1].path);
    }

    #[test]
    fn a_denied_place_is_reported_over_missing_ones() {
        let places = candidates(None, 1, None);
        let err = first_answering::<()>(&places, |place| {
            if place.kind == PlaceKind::System {
                Err(ClientError::PermissionDenied {
                    path: place.path.clone(),
                    error: io::ErrorKind::PermissionDenied.into(),
                    hint: "join".to_owned(),
                })
            } else {
                Err(unreachable(&place.path, io::ErrorKind::NotFound))
            }
        })
        .expect_err("nothing answers");
        assert!(matches!(err, ClientError::PermissionDenied { .. }), "{err}");
    }

    #[test]
    fn when_nothing_answers_every_place_is_named() {
        let places = candidates(Some(Path::new("/x")), 1, None);
        let err = first_answering::<()>(&places, |place| {
            Err(unreachable(&place.path, io::ErrorKind::NotFound))
        })
        .expect_err("nothing answers");
        let message = err.to_string();
        for place in &places {
            assert!(
                message.contains(&place.path.display().to_string()),
                "{message}"
            );
        }
        assert_eq!(err.exit_code(), crate::client::EXIT_UNAVAILABLE);
    }

    #[test]
    fn only_the_system_socket_is_the_system_services_place() {
        for root in [None, Some(Path::new("/t"))] {
            let kinds: Vec<PlaceKind> = candidates(Some(Path::new("/x")), 3, root)
                .iter()
                .map(|place| place.kind)
                .collect();
            assert_eq!(
                kinds,
                [
                    PlaceKind::User,
                    PlaceKind::User,
                    PlaceKind::User,
                    PlaceKind::System
                ]
            );
        }
    }

    #[test]
    fn a_users_place_is_served_by_that_user_or_root() {
        let me = 1000;
        assert!(trusted_server(PlaceKind::User, me, me, None));
        assert!(trusted_server(PlaceKind::User, 0, me, None));
        assert!(!trusted_server(PlaceKind::User, 1001, me, None));
        assert!(!trusted_server(PlaceKind::User, 65534, me, Some(65534)));
        // Root searching its own places: only root's daemon.
        assert!(trusted_server(PlaceKind::User, 0, 0, None));
        assert!(!trusted_server(PlaceKind::User, me, 0, None));
    }

    #[test]
    fn the_system_socket_is_also_served_by_the_owner_of_its_directory() {
        let me = 1000;
        let service = 991;
        assert!(trusted_server(PlaceKind::System, 0, me, Some(0)));
        assert!(trusted_server(PlaceKind::System, me, me, Some(0)));
        assert!(trusted_server(
            PlaceKind::System,
            service,
            me,
            Some(service)
        ));
        assert!(!trusted_server(PlaceKind::System, service, me, Some(0)));
        assert!(!trusted_server(PlaceKind::System, service, me, None));
        assert!(!trusted_server(PlaceKind::System, 1001, me, Some(service)));
    }

    #[test]
    fn a_passed_over_daemon_is_named_with_its_uid() {
        let places = candidates(None, 1, None);
        let err = first_answering::<()>(&places, |place| {
            Err(ClientError::Unreachable {
                path: place.path.clone(),
                error: io::Error::other("served by uid 7, not you: passed over"),
            })
        })
        .expect_err("nothing trusted answers");
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "{} (served by uid 7, not you: passed over)",
                places[0].path.display()
            )),
            "{message}"
        );
    }

    /// The places as the documentation writes them, in the order they are tried.
    fn documented_places() -> Vec<String> {
        candidates(Some(Path::new("$XDG_RUNTIME_DIR")), 4242, None)
            .iter()
            .map(|place| place.path.display().to_string().replace("4242", "UID"))
            .collect()
    }

    /// Asserts that `text` names every place, in order.
    fn assert_lists_places_in_order(text: &str, what: &str) {
        let mut rest = text;
        for place in documented_places() {
            let at = rest
                .find(&place)
                .unwrap_or_else(|| panic!("{what} does not list {place} (in order):\n{text}"));
            rest = &rest[at + place.len()..];
        }
    }

    #[test]
    fn help_and_man_page_list_the_places_in_order() {
        use clap::CommandFactory as _;
        let mut cli = crate::cli::Cli::command();
        let help = cli.render_long_help().to_string();
        let socket_help = help
            .split("--socket <PATH>")
            .nth(1)
            .expect("--socket in the help");
        // Help text is wrapped: compare with the line breaks taken out.
        let unwrapped = socket_help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_lists_places_in_order(&unwrapped, "--socket's help");
        let pages = crate::commands::man::pages().expect("render");
        let top = pages
            .iter()
            .find(|p| p.file_name == "rossipctl.1")
            .expect("rossipctl.1");
        let text = String::from_utf8_lossy(&top.roff).replace("\\-", "-");
        let files = text.split("FILES").nth(1).expect("a FILES section");
        assert_lists_places_in_order(files, "the man page's FILES");
    }

    #[cfg(unix)]
    #[test]
    fn uid_matches_the_owner_of_a_new_file() {
        use std::os::unix::fs::MetadataExt as _;
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let owner = file.as_file().metadata().expect("metadata").uid();
        assert_eq!(current_uid(), owner);
    }
}
