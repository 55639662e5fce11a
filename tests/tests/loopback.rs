//! Three daemons in this test process (`rossipd::run` on a tokio runtime),
//! on 127.0.0.1 with port 0, no mDNS, B and C joining A. Everything the test
//! checks goes through the real local socket and JSON-RPC.
//!
//! The daemons' tracing output goes to the test's captured output, which
//! libtest prints when a test fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rossip_tests::cluster::{self, collect_messages, count_deliveries, count_text};
use rossip_tests::rpc::RpcClient;
use rossip_tests::wait::wait_until;
use serde_json::json;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// One daemon running inside the test's runtime.
struct InProcess {
    name: String,
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    fn start(rt: &Runtime, name: &str, join: &[String]) -> InProcess {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rossip-inproc-{name}-"))
            .tempdir()
            .expect("temp dir");
        let socket = dir.path().join("rossipd.sock");
        let mut config = rossipd::Config::new(socket.clone(), dir.path().join("state"));
        config.name = name.to_owned();
        config.port = 0;
        config.bind = [127, 0, 0, 1].into();
        config.mdns = false;
        config.join = join.to_vec();
        let (stop, stopped) = oneshot::channel::<()>();
        // Dropping the sender also stops the daemon, so a panicking test
        // never leaves one running.
        let task = rt.spawn(rossipd::run(config, async move {
            let _ = stopped.await;
        }));
        let mut node = InProcess {
            name: name.to_owned(),
            socket,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        };
        node.wait_ready(rt);
        node
    }

    fn wait_ready(&mut self, rt: &Runtime) {
        let what = format!(
            "{} to answer status on {}",
            self.name,
            self.socket.display()
        );
        wait_until(Duration::from_secs(20), &what, || {
            if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
                let result = self.task.take().map(|t| rt.block_on(t));
                panic!("{} stopped before it was ready: {result:?}", self.name);
            }
            RpcClient::connect(&self.socket)
                .ok()
                .and_then(|mut c| c.try_call("status", json!({}), Duration::from_secs(5)).ok())
                .is_some_and(|r| r.is_ok())
        });
    }

    fn client(&self) -> RpcClient {
        RpcClient::connect(&self.socket).unwrap_or_else(|e| panic!("connect to {}: {e}", self.name))
    }

    /// Triggers the shutdown future and expects a graceful `Ok(())` return
    /// with the socket removed.
    fn stop(mut self, rt: &Runtime) {
        drop(self.stop.take());
        let task = self.task.take().expect("daemon task");
        let result = rt.block_on(async { tokio::time::timeout(STOP_TIMEOUT, task).await });
        match result {
            Ok(Ok(Ok(()))) => {}
            other => panic!("{} did not stop cleanly: {other:?}", self.name),
        }
        assert!(
            !self.socket.exists(),
            "{} left its socket {} behind",
            self.name,
            self.socket.display()
        );
    }
}

fn runtime() -> Runtime {
    // Daemon tracing goes to libtest's capture, shown only on failure.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug")),
        )
        .with_test_writer()
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Starts A, then B and C joining A, and waits until each lists the other
/// two as alive.
fn start_three(rt: &Runtime) -> [InProcess; 3] {
    let a = InProcess::start(rt, "a", &[]);
    let seed = a.client().status().addr;
    let b = InProcess::start(rt, "b", std::slice::from_ref(&seed));
    let c = InProcess::start(rt, "c", &[seed]);
    let nodes: Vec<(&str, &Path)> = [&a, &b, &c]
        .iter()
        .map(|n| (n.name.as_str(), n.socket.as_path()))
        .collect();
    cluster::wait_all_alive(&nodes, cluster::MEMBERSHIP_TIMEOUT);
    [a, b, c]
}

#[test]
fn three_daemons_deliver_a_message_exactly_once() {
    let rt = runtime();
    let nodes = start_three(&rt);
    let mut subscribers: Vec<RpcClient> = nodes
        .iter()
        .map(|n| n.client().subscribed_to_messages())
        .collect();

    let text = "hello from b, in process";
    let sent = nodes[1].client().send(text);

    for (node, subscriber) in nodes.iter().zip(subscribers.iter_mut()) {
        let copies = count_deliveries(subscriber, &node.name, text, DELIVERY_TIMEOUT);
        assert_eq!(copies, 1, "{} delivered {text:?} {copies} times", node.name);
        let history = node.client().history();
        assert_eq!(
            count_text(&history, text),
            1,
            "{} holds {text:?} not exactly once in history: {history:?}",
            node.name
        );
        let held = history
            .iter()
            .find(|m| m.text == text)
            .map(|m| m.id.as_str());
        assert_eq!(
            held,
            Some(sent.id.as_str()),
            "{} holds another id",
            node.name
        );
    }
    for node in nodes {
        node.stop(&rt);
    }
}

#[test]
fn the_same_text_twice_is_two_messages() {
    let rt = runtime();
    let nodes = start_three(&rt);
    let mut subscribers: Vec<RpcClient> = nodes
        .iter()
        .map(|n| n.client().subscribed_to_messages())
        .collect();

    let text = "twice";
    let mut sender = nodes[0].client();
    let first = sender.send(text);
    let second = sender.send(text);
    assert_ne!(first.id, second.id, "two sends got the same id");

    for (node, subscriber) in nodes.iter().zip(subscribers.iter_mut()) {
        let seen = collect_messages(subscriber, &node.name, text, 2, DELIVERY_TIMEOUT);
        let mut ids: Vec<&str> = seen.iter().map(|m| m.id.as_str()).collect();
        ids.sort_unstable();
        let mut want = vec![first.id.as_str(), second.id.as_str()];
        want.sort_unstable();
        assert_eq!(ids, want, "{} delivered {:?}", node.name, seen);
        let history = node.client().history();
        assert_eq!(
            count_text(&history, text),
            2,
            "{} history: {history:?}",
            node.name
        );
    }
    for node in nodes {
        node.stop(&rt);
    }
}
