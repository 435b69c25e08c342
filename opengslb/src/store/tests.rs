//! Tests of the store: every operation on every kind, the change stream, reopening, and the errors for
//! files this build must not read.

use std::path::{Path, PathBuf};

use super::*;
use crate::config::{AllDownPolicy, Config, RoutingAlgorithm};

/// A directory removed when the test ends, passed or failed.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("opengslb-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        Self(d)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn backend(service: &str, address: &str, port: u16) -> BackendId {
    BackendId::new(service.parse().unwrap(), address.parse().unwrap(), port)
}

pub(super) fn an_override(address: &str, healthy: bool) -> OverrideRecord {
    OverrideRecord {
        backend: backend("app.example.com", address, 80),
        healthy,
        reason: "maintenance".into(),
        by: "alice".into(),
        at_ms: 1_790_000_000_000,
    }
}

fn a_domain(name: &str) -> DomainRecord {
    DomainRecord {
        name: name.parse().unwrap(),
        routing_algorithm: RoutingAlgorithm::Weighted,
        regions: vec!["eu".into()],
        ttl: Some(30),
        max_answers: 2,
        all_down: Some(AllDownPolicy::Empty),
        latency_config: LatencyRecord {
            smoothing_factor: Some(0.5),
            max_latency_ms: None,
            min_samples: Some(3),
        },
        slow_start_ms: Some(30_000),
    }
}

fn a_server(address: &str) -> ServerRecord {
    ServerRecord {
        backend: backend("app.example.com", address, 8080),
        weight: 250,
        region: "eu".into(),
    }
}

fn a_region(name: &str) -> RegionRecord {
    RegionRecord {
        name: name.into(),
        health_check: HealthCheckRecord {
            kind: crate::config::HealthCheckType::Https,
            path: "/ready".into(),
            host: Some("app.example.com".into()),
            interval_ms: 10_000,
            timeout_ms: 2_000,
            failure_threshold: 2,
            success_threshold: 1,
            expected_status: vec!["204".into(), "3xx".into()],
            tls_verify: false,
        },
        countries: vec!["DE".into()],
        continents: vec!["EU".into()],
    }
}

fn a_mapping(cidr: &str) -> GeoMappingRecord {
    GeoMappingRecord {
        cidr: cidr.parse().unwrap(),
        region: "eu".into(),
        comment: Some("office".into()),
    }
}

fn a_pin(service: &str, byte: u8) -> PinRecord {
    PinRecord {
        service: service.parse().unwrap(),
        digest: [byte; 32],
    }
}

/// Put, get, list, replace, delete and delete again for one kind, with the change numbers.
fn exercise<K: Kind>(store: &Store, first: K::Value, second: K::Value, replaced: K::Value)
where
    K::Value: PartialEq + std::fmt::Debug + Clone,
    K::Key: std::fmt::Debug,
{
    let seq = store.seq().unwrap();
    let key = K::key_of(&first);
    assert_eq!(store.get::<K>(&key).unwrap(), None);
    assert_eq!(store.put::<K>(&first).unwrap(), seq + 1);
    assert_eq!(store.put::<K>(&second).unwrap(), seq + 2);
    assert_eq!(store.get::<K>(&key).unwrap(), Some(first.clone()));
    assert_eq!(store.list::<K>().unwrap(), [first.clone(), second.clone()]);
    assert_eq!(store.put::<K>(&replaced).unwrap(), seq + 3);
    assert_eq!(store.get::<K>(&key).unwrap(), Some(replaced.clone()));
    assert_eq!(store.list::<K>().unwrap().len(), 2);
    assert_eq!(store.delete::<K>(&key).unwrap(), Some(seq + 4));
    assert_eq!(store.get::<K>(&key).unwrap(), None, "{key:?} deleted");
    assert_eq!(store.delete::<K>(&key).unwrap(), None, "nothing to delete");
    assert_eq!(store.seq().unwrap(), seq + 4);
    assert_eq!(store.list::<K>().unwrap(), [second]);
}

#[test]
fn every_kind_puts_gets_lists_and_deletes() {
    let dir = TempDir::new("kinds");
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.seq().unwrap(), 0);
    exercise::<Overrides>(
        &store,
        an_override("10.0.0.1", false),
        an_override("10.0.0.2", true),
        an_override("10.0.0.1", true),
    );
    exercise::<Domains>(
        &store,
        a_domain("a.example.com"),
        a_domain("b.example.com"),
        DomainRecord {
            ttl: None,
            ..a_domain("a.example.com")
        },
    );
    exercise::<Servers>(
        &store,
        a_server("10.0.0.1"),
        a_server("2001:db8::1"),
        ServerRecord {
            weight: 0,
            ..a_server("10.0.0.1")
        },
    );
    exercise::<Regions>(
        &store,
        a_region("eu"),
        a_region("us"),
        RegionRecord {
            countries: Vec::new(),
            ..a_region("eu")
        },
    );
    exercise::<GeoMappings>(
        &store,
        a_mapping("10.0.0.0/8"),
        a_mapping("2001:db8::/32"),
        GeoMappingRecord {
            comment: None,
            ..a_mapping("10.0.0.0/8")
        },
    );
    exercise::<Pins>(
        &store,
        a_pin("app.example.com", 1),
        a_pin("b.example.com", 2),
        a_pin("app.example.com", 3),
    );
    assert_eq!(store.seq().unwrap(), 24);
}

#[test]
fn keys_are_canonical() {
    let dir = TempDir::new("keys");
    let store = Store::open(dir.path()).unwrap();
    // An IPv4-mapped address is the IPv4 backend, as in the registry.
    let mapped = an_override("::ffff:10.0.0.1", false);
    assert_eq!(mapped.backend, backend("app.example.com", "10.0.0.1", 80));
    store.put::<Overrides>(&mapped).unwrap();
    let key = "app.example.com/10.0.0.1/80".parse::<BackendId>().unwrap();
    assert_eq!(store.get::<Overrides>(&key).unwrap(), Some(mapped));
    let v6: BackendId = "app.example.com/2001:db8::1/443".parse().unwrap();
    assert_eq!(v6, backend("app.example.com", "2001:db8::1", 443));
    assert!("app.example.com/10.0.0.1".parse::<BackendId>().is_err());
    // A mapping is keyed by its network: host bits do not make another one.
    store.put::<GeoMappings>(&a_mapping("10.1.2.3/8")).unwrap();
    let cidr = "10.0.0.0/8".parse().unwrap();
    assert!(store.get::<GeoMappings>(&cidr).unwrap().is_some());
}

#[test]
fn changes_arrive_in_order_decoded() {
    let dir = TempDir::new("changes");
    let store = Store::open(dir.path()).unwrap();
    let mut changes = store.changes();
    assert!(changes.try_recv().is_none());
    let ov = an_override("10.0.0.1", false);
    store.put::<Overrides>(&ov).unwrap();
    store.put::<Pins>(&a_pin("app.example.com", 7)).unwrap();
    store.delete::<Overrides>(&ov.backend).unwrap();
    // Deleting nothing is no change.
    store
        .delete::<Domains>(&"x.example.com".parse().unwrap())
        .unwrap();
    store.put::<Regions>(&a_region("eu")).unwrap();
    let got: Vec<Change> = std::iter::from_fn(|| changes.try_recv())
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        got,
        [
            Change {
                seq: 1,
                event: Event::Put(Record::Overrides(ov.clone())),
            },
            Change {
                seq: 2,
                event: Event::Put(Record::Pins(a_pin("app.example.com", 7))),
            },
            Change {
                seq: 3,
                event: Event::Delete(Key::Overrides(ov.backend)),
            },
            Change {
                seq: 4,
                event: Event::Put(Record::Regions(a_region("eu"))),
            },
        ]
    );
}

#[tokio::test]
async fn a_slow_reader_is_told_it_lagged() {
    let dir = TempDir::new("lag");
    let store = Store::open(dir.path()).unwrap();
    let mut changes = store.changes();
    for port in 0..1100 {
        let mut ov = an_override("10.0.0.1", true);
        ov.backend.port = port;
        store.put::<Overrides>(&ov).unwrap();
    }
    assert!(matches!(
        changes.recv().await,
        Err(StoreError::Lagged { missed: 76, .. })
    ));
    // After the gap it carries on with what it still holds.
    assert_eq!(changes.recv().await.unwrap().seq, 77);
    drop(store);
    let mut rest = 0;
    let end = loop {
        match changes.recv().await {
            Ok(_) => rest += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(rest, 1100 - 77, "what was buffered is still delivered");
    assert!(matches!(end, StoreError::Closed { .. }), "{end}");
}

#[test]
fn reopening_keeps_every_record_and_the_change_number() {
    let dir = TempDir::new("reopen");
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .put::<Overrides>(&an_override("10.0.0.1", false))
            .unwrap();
        store.put::<Domains>(&a_domain("a.example.com")).unwrap();
        store.put::<Servers>(&a_server("10.0.0.1")).unwrap();
        store.put::<Regions>(&a_region("eu")).unwrap();
        store.put::<GeoMappings>(&a_mapping("10.0.0.0/8")).unwrap();
        store.put::<Pins>(&a_pin("app.example.com", 1)).unwrap();
        store
            .delete::<Pins>(&"app.example.com".parse().unwrap())
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.seq().unwrap(), 7);
    assert_eq!(
        store.list::<Overrides>().unwrap(),
        [an_override("10.0.0.1", false)]
    );
    assert_eq!(
        store.list::<Domains>().unwrap(),
        [a_domain("a.example.com")]
    );
    assert_eq!(store.list::<Servers>().unwrap(), [a_server("10.0.0.1")]);
    assert_eq!(store.list::<Regions>().unwrap(), [a_region("eu")]);
    assert_eq!(
        store.list::<GeoMappings>().unwrap(),
        [a_mapping("10.0.0.0/8")]
    );
    assert_eq!(store.list::<Pins>().unwrap(), []);
    assert_eq!(store.put::<Pins>(&a_pin("b.example.com", 2)).unwrap(), 8);
}

#[test]
fn one_store_per_directory_in_a_process_and_none_shared_across_processes() {
    let dir = TempDir::new("shared");
    let a = Store::shared(dir.path()).unwrap();
    let b = Store::shared(&dir.path().join(".")).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    // A second open of the file (as by another process) is refused, not given a second writer.
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Busy { .. }), "{err}");
    drop((a, b));
    assert!(
        Store::open(dir.path()).is_ok(),
        "closed once all are dropped"
    );
}

#[test]
fn the_store_comes_from_the_overwatch_config() {
    let dir = TempDir::new("config");
    let mut cfg = Config::default();
    cfg.overwatch.data_dir = dir.path().to_owned();
    let store = Store::from_config(&cfg.overwatch).unwrap();
    assert_eq!(
        store.location(),
        dir.path().join(FILE_NAME).display().to_string()
    );
}

#[test]
fn records_mirror_the_config() {
    let yaml = r#"
mode: overwatch
dns: { zones: [example.com] }
regions:
  - name: eu
    servers: [{ address: 10.0.0.1, service: app.example.com }]
    health_check: { type: https, path: /ready, interval: 10s, timeout: 2s, expected_status: [204, 3xx] }
    countries: [de]
domains:
  - name: app.example.com
    routing_algorithm: geo
    regions: [eu]
    all_down: last_healthy
    latency_config: { max_latency_ms: 200 }
overwatch:
  geolocation:
    custom_mappings: [{ cidr: 10.1.2.3/16, region: eu, comment: office }]
"#;
    let cfg = Config::from_yaml_str(yaml).unwrap();
    let domain = DomainRecord::from_config(&cfg.domains[0]);
    assert_eq!(domain.to_config(), cfg.domains[0]);
    let region = RegionRecord::from_config(&cfg.regions[0]);
    assert_eq!(region.health_check.expected_status, ["204", "3xx"]);
    let back = region.to_config().unwrap();
    assert_eq!(back.health_check, cfg.regions[0].health_check);
    assert_eq!(back.countries, ["DE"]);
    assert!(back.servers.is_empty(), "servers are records of their own");
    let geo = cfg.overwatch.geolocation.as_ref().unwrap();
    let mapping = GeoMappingRecord::from_config(&geo.custom_mappings[0]);
    assert_eq!(mapping.to_config(), geo.custom_mappings[0]);
    let mut bad = region;
    bad.health_check.expected_status = vec!["7xx".into()];
    assert!(bad.to_config().is_err());
}

#[test]
fn records_are_json_after_a_format_byte() {
    let dir = TempDir::new("format");
    let store = Embedded::open(dir.path()).unwrap();
    let typed = Store::with_backend(store);
    typed.put::<Pins>(&a_pin("app.example.com", 0xab)).unwrap();
    let raw = typed
        .backend
        .get(Table::Pins, "app.example.com")
        .unwrap()
        .unwrap();
    assert_eq!(raw[0], codec::FORMAT);
    let json: serde_json::Value = serde_json::from_slice(&raw[1..]).unwrap();
    assert_eq!(json["service"], "app.example.com");
    assert_eq!(json["digest"], "ab".repeat(32));
}

#[test]
fn a_record_of_a_newer_format_or_damaged_is_an_error_naming_it() {
    let dir = TempDir::new("badrecord");
    let store = Store::open(dir.path()).unwrap();
    let file = dir.path().join(FILE_NAME).display().to_string();
    store
        .backend
        .put(Table::Domains, "a.example.com", b"\x02{}")
        .unwrap();
    let err = store
        .get::<Domains>(&"a.example.com".parse().unwrap())
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NewerRecord {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&file) && text.contains("a.example.com") && text.contains("domains"),
        "{text}"
    );
    store
        .backend
        .put(Table::Domains, "a.example.com", b"\x01{\"name\":")
        .unwrap();
    let err = store.list::<Domains>().unwrap_err();
    assert!(matches!(err, StoreError::CorruptRecord { .. }), "{err}");
    assert!(err.to_string().contains(&file), "{err}");
    store
        .backend
        .put(Table::Domains, "a.example.com", b"")
        .unwrap();
    assert!(matches!(
        store.list::<Domains>().unwrap_err(),
        StoreError::CorruptRecord { .. }
    ));
}

#[test]
fn a_corrupt_file_is_an_error_naming_it_and_is_left_untouched() {
    let dir = TempDir::new("corrupt");
    std::fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join(FILE_NAME);
    let junk: Vec<u8> = (0..16_384u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&file, &junk).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("corrupt"), "{text}");
    assert_eq!(std::fs::read(&file).unwrap(), junk, "never reset");
}

#[test]
fn a_damaged_store_file_is_an_error_naming_it() {
    let dir = TempDir::new("damaged");
    {
        let store = Store::open(dir.path()).unwrap();
        store.put::<Domains>(&a_domain("a.example.com")).unwrap();
    }
    // Overwrite everything past the header: the pages no longer match their checksums.
    let file = dir.path().join(FILE_NAME);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[4096..].fill(0xff);
    std::fs::write(&file, &bytes).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(&file.display().to_string()));
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "never reset");
}

#[test]
fn a_file_of_a_newer_schema_is_refused() {
    let dir = TempDir::new("schema");
    drop(Store::open(dir.path()).unwrap());
    let file = dir.path().join(FILE_NAME);
    {
        let db = redb::Database::create(&file).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(embedded::META)
            .unwrap()
            .insert(embedded::SCHEMA_KEY, SCHEMA_VERSION + 1)
            .unwrap();
        w.commit().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NewerSchema {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("schema version 2"), "{text}");
}

#[test]
fn a_redb_file_that_is_not_a_store_is_refused() {
    let dir = TempDir::new("foreign");
    std::fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join(FILE_NAME);
    {
        let db = redb::Database::create(&file).unwrap();
        let w = db.begin_write().unwrap();
        let t: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("something");
        w.open_table(t).unwrap().insert("x", 1).unwrap();
        w.commit().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { reason, .. } if reason.contains("not an opengslb store")),
        "{err}"
    );
}

#[test]
fn the_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("mode");
    drop(Store::open(dir.path()).unwrap());
    let file = dir.path().join(FILE_NAME);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Store::open(dir.path()).unwrap());
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
