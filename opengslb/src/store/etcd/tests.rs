//! The etcd backend against a real etcd (Debian `etcd-server`) on loopback: the store's operations, a
//! change made through one handle announced on another, trust-on-first-use pins written once, and a
//! cluster that goes away and comes back.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::Etcd;
use crate::{
    config::EtcdConfig,
    store::{
        Event, Overrides, PinRecord, Pins, Record, Store, StoreError,
        tests::{TempDir, an_override, backend},
    },
};

/// One etcd member on loopback, killed on drop.
struct Member {
    child: Option<Child>,
    dir: TempDir,
    client: u16,
    peer: u16,
    /// Serves clients over TLS with the certificates in `dir/tls`, asking for a client certificate.
    tls: bool,
}

/// A port free now, never etcd's own 2379/2380 (a system etcd may hold them).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Member {
    fn start(tag: &str) -> Self {
        Self::start_with(tag, false)
    }

    fn start_with(tag: &str, tls: bool) -> Self {
        let mut m = Self {
            child: None,
            dir: TempDir::new(&format!("etcd-{tag}")),
            client: free_port(),
            peer: free_port(),
            tls,
        };
        if tls {
            make_certificates(&m.dir.path().join("tls"));
        }
        m.run();
        m
    }

    fn tls_file(&self, name: &str) -> PathBuf {
        self.dir.path().join("tls").join(name)
    }

    fn run(&mut self) {
        let etcd = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("etcd is not installed (Debian package etcd-server; `cargo xtask setup` installs it)");
        let scheme = if self.tls { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", self.client);
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let mut cmd = Command::new(etcd);
        if self.tls {
            cmd.arg("--cert-file")
                .arg(self.tls_file("server.pem"))
                .arg("--key-file")
                .arg(self.tls_file("server.key"))
                .arg("--trusted-ca-file")
                .arg(self.tls_file("ca.pem"))
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", "m0", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("m0={peer}")])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn config(&self) -> EtcdConfig {
        let scheme = if self.tls { "https" } else { "http" };
        EtcdConfig {
            endpoints: vec![format!("{scheme}://127.0.0.1:{}", self.client)],
            prefix: format!("/opengslb-test-{}/", std::process::id()),
            dial_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            username: None,
            password: None,
            tls: self.tls.then(|| crate::config::EtcdTls {
                ca_file: Some(self.tls_file("ca.pem")),
                cert_file: Some(self.tls_file("client.pem")),
                key_file: Some(self.tls_file("client.key")),
                server_name: None,
            }),
        }
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl.
fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &key[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=opengslb test CA",
            ],
        ]
        .concat(),
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        let (k, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            &[
                &["req"],
                &key[..],
                &["-keyout", &k, "-out", &csr, "-subj", &format!("/CN={name}")],
            ]
            .concat(),
        );
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

fn up(store: &Store) -> bool {
    store.link().is_some_and(|l| l.up)
}

#[test]
fn two_handles_on_one_cluster_share_every_change_and_the_first_pin() {
    let etcd = Member::start("share");
    let a = Store::with_backend(Etcd::open(&etcd.config()).unwrap());
    let b = Store::with_backend(Etcd::open(&etcd.config()).unwrap());
    assert!(wait_for(Duration::from_secs(10), || up(&a) && up(&b)));
    let mut seen_by_b = b.changes();

    let o = an_override("192.0.2.1", false);
    let seq = a.put::<Overrides>(&o).unwrap();
    assert!(seq > 0);
    // The writer reads its own write at once.
    assert_eq!(a.get::<Overrides>(&o.backend).unwrap(), Some(o.clone()));
    let started = Instant::now();
    let change = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { tokio::time::timeout(Duration::from_secs(3), seen_by_b.recv()).await })
        .expect("b hears of a's change within 3 s")
        .unwrap();
    println!(
        "a change reached the other handle in {:?}",
        started.elapsed()
    );
    assert_eq!(change.seq, seq);
    assert_eq!(change.event, Event::Put(Record::Overrides(o.clone())));
    assert_eq!(b.list::<Overrides>().unwrap(), vec![o.clone()]);
    assert_eq!(b.seq().unwrap(), seq);

    // The first pin is kept; a second for the same service writes nothing.
    let pin = |digest| PinRecord {
        service: "app.example.com".parse().unwrap(),
        digest,
    };
    assert!(a.put_new::<Pins>(&pin([1; 32])).unwrap().is_some());
    assert_eq!(b.put_new::<Pins>(&pin([2; 32])).unwrap(), None);
    assert!(wait_for(Duration::from_secs(3), || {
        b.get::<Pins>(&"app.example.com".parse().unwrap()).unwrap() == Some(pin([1; 32]))
    }));

    let deleted = b.delete::<Overrides>(&o.backend).unwrap();
    assert!(deleted.is_some_and(|d| d > seq));
    assert_eq!(b.delete::<Overrides>(&o.backend).unwrap(), None);
    assert!(wait_for(Duration::from_secs(3), || a
        .list::<Overrides>()
        .unwrap()
        .is_empty()));
    assert_eq!(
        a.get::<Overrides>(&backend("app.example.com", "192.0.2.1", 80))
            .unwrap(),
        None
    );

    // A write under another prefix moves the cluster's revision: both handles report it once the
    // watch's progress reports come (once a second), so overwatches that agree show one revision.
    let mut elsewhere = etcd.config();
    elsewhere.prefix = format!("/elsewhere-{}/", std::process::id());
    let other = Store::with_backend(Etcd::open(&elsewhere).unwrap());
    let moved = other
        .put::<Overrides>(&an_override("192.0.2.3", true))
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || {
            [&a, &b].iter().all(|s| s.link().unwrap().revision == moved)
        }),
        "both at {moved}: {:?} {:?}",
        a.link(),
        b.link()
    );
    assert!(
        a.list::<Overrides>().unwrap().is_empty(),
        "another prefix's record is not ours"
    );
}

#[test]
fn a_lost_cluster_keeps_the_last_state_refuses_changes_and_catches_up() {
    let mut etcd = Member::start("lost");
    let store = Store::with_backend(Etcd::open(&etcd.config()).unwrap());
    assert!(wait_for(Duration::from_secs(10), || up(&store)));
    let kept = an_override("192.0.2.1", false);
    store.put::<Overrides>(&kept).unwrap();

    etcd.stop();
    let started = Instant::now();
    assert!(
        wait_for(Duration::from_secs(10), || !up(&store)),
        "the store sees the cluster gone"
    );
    println!("the loss was seen in {:?}", started.elapsed());
    let link = store.link().unwrap();
    assert!(link.reason.is_some(), "{link:?}");
    // Reads still answer from the last state.
    assert_eq!(store.list::<Overrides>().unwrap(), vec![kept.clone()]);
    // A write is refused with the reason, within the request timeout.
    let started = Instant::now();
    let err = store
        .put::<Overrides>(&an_override("192.0.2.2", true))
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("cannot be reached"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    etcd.run();
    let started = Instant::now();
    assert!(
        wait_for(Duration::from_secs(15), || up(&store)),
        "the store reconnects"
    );
    println!("reconnected in {:?}", started.elapsed());
    store
        .put::<Overrides>(&an_override("192.0.2.2", true))
        .unwrap();
    assert_eq!(store.list::<Overrides>().unwrap().len(), 2);
}

#[test]
fn a_cluster_that_asks_for_tls_and_a_client_certificate_is_reached() {
    let etcd = Member::start_with("tls", true);
    let store = Store::with_backend(Etcd::open(&etcd.config()).unwrap());
    assert!(
        wait_for(Duration::from_secs(10), || up(&store)),
        "over TLS: {:?}",
        store.link()
    );
    let o = an_override("192.0.2.1", false);
    store.put::<Overrides>(&o).unwrap();
    assert_eq!(store.list::<Overrides>().unwrap(), vec![o]);

    // Without the client certificate the cluster refuses: the store says so, and changes are refused.
    let mut no_cert = etcd.config();
    no_cert.dial_timeout = Duration::from_millis(500);
    no_cert.request_timeout = Duration::from_millis(500);
    if let Some(t) = no_cert.tls.as_mut() {
        t.cert_file = None;
        t.key_file = None;
    }
    let refused = Store::with_backend(Etcd::open(&no_cert).unwrap());
    let link = refused.link().unwrap();
    assert!(!link.up, "{link:?}");
    assert!(
        refused
            .put::<Overrides>(&an_override("192.0.2.2", true))
            .is_err()
    );
    // A CA file that cannot be read is an error at once, naming it.
    let mut bad = etcd.config();
    if let Some(t) = bad.tls.as_mut() {
        t.ca_file = Some("/nonexistent/ca.pem".into());
    }
    let err = Etcd::open(&bad).err().expect("refused");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
