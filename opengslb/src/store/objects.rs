//! The objects made through the API (domains, regions, servers, geolocation mappings) and how they join
//! the config file's: the effective config is the file's with the stored objects appended, checked by the
//! config's own validator, so an object made through the API follows every rule a file one does.
//!
//! Pure: the overwatch's loop holds an [`ApiObjects`], checks a change against it with [`check`] before
//! storing it, and builds the config it runs from with [`ApiObjects::merge_lenient`].

use std::{collections::BTreeMap, fmt};

use ipnet::IpNet;

use super::{
    BackendId, DomainRecord, Domains, GeoMappingRecord, GeoMappings, RegionRecord, Regions,
    ServerRecord, Servers, Store, StoreError,
};
use crate::{
    config::{Config, ConfigError, GeolocationConfig, Server},
    name::DnsName,
};

/// One object made through the API.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiObject {
    /// A domain.
    Domain(DomainRecord),
    /// A region (without servers: they are objects of their own).
    Region(RegionRecord),
    /// A server.
    Server(ServerRecord),
    /// A custom geolocation mapping.
    GeoMapping(GeoMappingRecord),
}

/// What names an object made through the API.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKey {
    /// A domain, by name.
    Domain(DnsName),
    /// A region, by name.
    Region(String),
    /// A server, by service, address and port.
    Server(BackendId),
    /// A geolocation mapping, by CIDR (host bits cleared).
    GeoMapping(IpNet),
}

impl ApiObject {
    /// Its key.
    pub fn key(&self) -> ObjectKey {
        match self {
            Self::Domain(d) => ObjectKey::Domain(d.name.clone()),
            Self::Region(r) => ObjectKey::Region(r.name.clone()),
            Self::Server(s) => ObjectKey::Server(s.backend.clone()),
            Self::GeoMapping(m) => ObjectKey::GeoMapping(m.cidr.trunc()),
        }
    }
}

/// The object as a path into the API's names: `domains[app.example.com]`,
/// `servers[app.example.com/2001:db8::1/80]`, `geo.mappings[10.0.0.0/8]`.
impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(n) => write!(f, "domains[{n}]"),
            Self::Region(n) => write!(f, "regions[{n}]"),
            Self::Server(id) => write!(f, "servers[{id}]"),
            Self::GeoMapping(c) => write!(f, "geo.mappings[{}]", c.trunc()),
        }
    }
}

impl ObjectKey {
    /// What it is, for messages: `domain`, `region`, `server`, `geolocation mapping`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Domain(_) => "domain",
            Self::Region(_) => "region",
            Self::Server(_) => "server",
            Self::GeoMapping(_) => "geolocation mapping",
        }
    }

    /// Its name alone: `app.example.com`, `eu`, `app.example.com/192.0.2.1/80`, `10.0.0.0/8`.
    pub fn name(&self) -> String {
        match self {
            Self::Domain(n) => n.to_string(),
            Self::Region(n) => n.clone(),
            Self::Server(id) => id.to_string(),
            Self::GeoMapping(c) => c.trunc().to_string(),
        }
    }
}

/// Every object made through the API, by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiObjects {
    /// Domains.
    pub domains: BTreeMap<DnsName, DomainRecord>,
    /// Regions.
    pub regions: BTreeMap<String, RegionRecord>,
    /// Servers.
    pub servers: BTreeMap<BackendId, ServerRecord>,
    /// Geolocation mappings.
    pub geo_mappings: BTreeMap<IpNet, GeoMappingRecord>,
}

/// Why a change to the API's objects is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The object is the config file's, or already exists, or others still use it.
    Conflict(String),
    /// No such object.
    NotFound(String),
    /// The object breaks a config rule; the message names the field.
    Invalid(String),
}

/// A merge that failed: the rule broken, and the object that broke it when it is one of the API's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeError {
    /// The object at fault, if the path leads to one.
    pub object: Option<ObjectKey>,
    /// The rule broken, with the path of the field (`domains[app.example.com].ttl: ...`).
    pub message: String,
}

impl ApiObjects {
    /// What the store holds.
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        Ok(Self {
            domains: by_key(store.list::<Domains>()?, |d| d.name.clone()),
            regions: by_key(store.list::<Regions>()?, |r| r.name.clone()),
            servers: by_key(store.list::<Servers>()?, |s| s.backend.clone()),
            geo_mappings: by_key(store.list::<GeoMappings>()?, |m| m.cidr.trunc()),
        })
    }

    /// How many objects there are.
    pub fn len(&self) -> usize {
        self.domains.len() + self.regions.len() + self.servers.len() + self.geo_mappings.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an object of this key exists.
    pub fn contains(&self, key: &ObjectKey) -> bool {
        match key {
            ObjectKey::Domain(n) => self.domains.contains_key(n),
            ObjectKey::Region(n) => self.regions.contains_key(n),
            ObjectKey::Server(id) => self.servers.contains_key(id),
            ObjectKey::GeoMapping(c) => self.geo_mappings.contains_key(&c.trunc()),
        }
    }

    /// Adds or replaces an object.
    pub fn put(&mut self, object: ApiObject) {
        match object {
            ApiObject::Domain(d) => {
                self.domains.insert(d.name.clone(), d);
            }
            ApiObject::Region(r) => {
                self.regions.insert(r.name.clone(), r);
            }
            ApiObject::Server(s) => {
                self.servers.insert(s.backend.clone(), s);
            }
            ApiObject::GeoMapping(m) => {
                self.geo_mappings.insert(m.cidr.trunc(), m);
            }
        }
    }

    /// Removes an object; false if there was none.
    pub fn remove(&mut self, key: &ObjectKey) -> bool {
        match key {
            ObjectKey::Domain(n) => self.domains.remove(n).is_some(),
            ObjectKey::Region(n) => self.regions.remove(n).is_some(),
            ObjectKey::Server(id) => self.servers.remove(id).is_some(),
            ObjectKey::GeoMapping(c) => self.geo_mappings.remove(&c.trunc()).is_some(),
        }
    }

    /// The file's config with every object appended, validated; the first rule broken otherwise.
    pub fn merge(&self, file: &Config) -> Result<Config, MergeError> {
        let (cfg, places, server_fault) = self.build(file)?;
        cfg.validate().map_err(|e| translate(&e, &places))?;
        // After the config's rules: a domain that names no such region is that domain's fault, not
        // its servers'.
        match server_fault {
            Some(e) => Err(e),
            None => Ok(cfg),
        }
    }

    /// As [`Self::merge`], leaving out each object that breaks a rule (a server whose domain the file
    /// no longer has, say): the config, the objects it holds, and the objects left out with why. A
    /// bad object must not stop the overwatch, and it stays stored, so a fixed file brings it back.
    pub fn merge_lenient(&self, file: &Config) -> (Config, Self, Vec<MergeError>) {
        let mut kept = self.clone();
        let mut left_out = Vec::new();
        // Each round leaves one object out, so this ends.
        loop {
            match kept.merge(file) {
                Ok(cfg) => return (cfg, kept, left_out),
                Err(e) => match &e.object {
                    Some(key) if kept.remove(key) => left_out.push(e),
                    // Not one object's fault: the file alone is valid, so leave them all out.
                    _ => {
                        left_out.push(e);
                        return (file.clone(), Self::default(), left_out);
                    }
                },
            }
        }
    }

    /// The merged config before validation, where each object landed in it (its key path), and the
    /// first server left out of it for a rule of ours (its region is unknown, or not its domain's).
    fn build(&self, file: &Config) -> Result<Built, MergeError> {
        let mut cfg = file.clone();
        let mut places = Vec::new();
        for d in self.domains.values() {
            places.push((
                format!("domains[{}]", cfg.domains.len()),
                ObjectKey::Domain(d.name.clone()),
            ));
            cfg.domains.push(d.to_config());
        }
        for r in self.regions.values() {
            let key = ObjectKey::Region(r.name.clone());
            let region = r.to_config().map_err(|m| MergeError {
                message: format!("{key}.health_check.expected_status: {m}"),
                object: Some(key.clone()),
            })?;
            places.push((format!("regions[{}]", cfg.regions.len()), key));
            cfg.regions.push(region);
        }
        let mut server_fault = None;
        for s in self.servers.values() {
            let key = ObjectKey::Server(s.backend.clone());
            let fail = |message: String| MergeError {
                object: Some(key.clone()),
                message: format!("{key}.{message}"),
            };
            let Some(i) = cfg.regions.iter().position(|r| r.name == s.region) else {
                server_fault.get_or_insert(fail(format!(
                    "region: no region named {:?} is configured",
                    s.region
                )));
                continue;
            };
            let service = &s.backend.service;
            // The validator lets a server sit in a region its domain does not list; such a server is
            // never answered, which through the API is always a mistake.
            if let Some(d) = cfg.domains.iter().find(|d| &d.name == service)
                && !d.regions.contains(&s.region)
            {
                server_fault.get_or_insert(fail(format!(
                    "region: domain {service} does not list region {:?} in its regions, so this \
                     server would never be answered",
                    s.region
                )));
                continue;
            }
            let servers = &mut cfg.regions[i].servers;
            places.push((format!("regions[{i}].servers[{}]", servers.len()), key));
            servers.push(Server {
                address: s.backend.address,
                port: s.backend.port,
                weight: s.weight,
                service: service.clone(),
                host: None,
            });
        }
        if let Some(first) = self.geo_mappings.values().next() {
            let (prefix, geo) = geolocation_mut(&mut cfg).ok_or_else(|| {
                let key = ObjectKey::GeoMapping(first.cidr.trunc());
                MergeError {
                    message: format!(
                        "{key}: geolocation is not configured (add overwatch.geolocation to the \
                         config file)"
                    ),
                    object: Some(key),
                }
            })?;
            for m in self.geo_mappings.values() {
                places.push((
                    format!("{prefix}.custom_mappings[{}]", geo.custom_mappings.len()),
                    ObjectKey::GeoMapping(m.cidr.trunc()),
                ));
                geo.custom_mappings.push(m.to_config());
            }
        }
        Ok((cfg, places, server_fault))
    }
}

/// A merged config before validation, the key path of each object in it, and a server left out.
type Built = (Config, Vec<(String, ObjectKey)>, Option<MergeError>);

fn by_key<K: Ord, V>(values: Vec<V>, key: impl Fn(&V) -> K) -> BTreeMap<K, V> {
    values.into_iter().map(|v| (key(&v), v)).collect()
}

/// Where the config keeps its geolocation settings, and that key's path.
fn geolocation_mut(cfg: &mut Config) -> Option<(&'static str, &mut GeolocationConfig)> {
    if let Some(g) = cfg.overwatch.geolocation.as_mut() {
        return Some(("overwatch.geolocation", g));
    }
    cfg.geolocation.as_mut().map(|g| ("geolocation", g))
}

/// A validation error with the index of an API object's key path replaced by its name, and that object.
fn translate(e: &ConfigError, places: &[(String, ObjectKey)]) -> MergeError {
    let text = e.to_string();
    let path = e.key_path().unwrap_or_default();
    let at = places
        .iter()
        .filter(|(p, _)| {
            path.strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
        .max_by_key(|(p, _)| p.len());
    match at {
        Some((p, key)) => MergeError {
            message: match text.strip_prefix(p.as_str()) {
                Some(rest) => format!("{key}{rest}"),
                None => text.clone(),
            },
            object: Some(key.clone()),
        },
        None => MergeError {
            object: None,
            message: text,
        },
    }
}

/// A change to the API's objects: the object to create (`create`) or replace, or the key to delete.
#[derive(Clone, Debug, PartialEq)]
pub enum ObjectChange {
    /// Create (`create: true`: refused if it exists) or replace (refused if it does not) an object.
    Put {
        /// The object.
        object: ApiObject,
        /// Create rather than replace.
        create: bool,
    },
    /// Delete an object.
    Delete(ObjectKey),
}

/// Whether `change` may be applied to `objects` (all that is stored) under the file's config `file`
/// (read from `source`, for messages): not one of the file's objects, existing or not as the change
/// needs, and leaving a config that validates. A rule broken by a deletion is a conflict (something
/// still uses the object); by a put, the object is invalid.
pub fn check(
    file: &Config,
    source: &str,
    objects: &ApiObjects,
    change: &ObjectChange,
) -> Result<(), Refusal> {
    let key = match change {
        ObjectChange::Put { object, .. } => object.key(),
        ObjectChange::Delete(key) => key.clone(),
    };
    let exists = objects.contains(&key);
    // A stored object the file has since defined is shadowed (left out); deleting the stored copy is
    // the one change it can take.
    let shadowed_delete = matches!(change, ObjectChange::Delete(_)) && exists;
    if in_file(file, &key) && !shadowed_delete {
        return Err(Refusal::Conflict(format!(
            "{} {} is defined in the config file {source}, which the API cannot change: edit the \
             file and reload (SIGHUP)",
            key.kind(),
            key.name()
        )));
    }
    let (_, mut after, _) = objects.merge_lenient(file);
    match change {
        ObjectChange::Put { create: true, .. } if exists => {
            return Err(Refusal::Conflict(format!(
                "{} {} already exists: PUT replaces it",
                key.kind(),
                key.name()
            )));
        }
        ObjectChange::Put { create: false, .. } | ObjectChange::Delete(_) if !exists => {
            return Err(Refusal::NotFound(format!(
                "no {} {} was made through the API",
                key.kind(),
                key.name()
            )));
        }
        ObjectChange::Put { object, .. } => after.put(object.clone()),
        ObjectChange::Delete(key) => {
            after.remove(key);
        }
    }
    match after.merge(file) {
        Ok(_) => Ok(()),
        Err(e) if matches!(change, ObjectChange::Delete(_)) => Err(Refusal::Conflict(format!(
            "{} {} is still in use: {}",
            key.kind(),
            key.name(),
            e.message
        ))),
        Err(e) => Err(Refusal::Invalid(e.message)),
    }
}

/// Whether the config file defines the object.
fn in_file(file: &Config, key: &ObjectKey) -> bool {
    match key {
        ObjectKey::Domain(n) => file.domains.iter().any(|d| &d.name == n),
        ObjectKey::Region(n) => file.regions.iter().any(|r| &r.name == n),
        ObjectKey::Server(id) => file.regions.iter().flat_map(|r| &r.servers).any(|s| {
            s.service == id.service && s.address.to_canonical() == id.address && s.port == id.port
        }),
        ObjectKey::GeoMapping(c) => file.geolocation().is_some_and(|g| {
            g.custom_mappings
                .iter()
                .any(|m| m.cidr.trunc() == c.trunc())
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const FILE: &str = r#"
dns: { zones: [example.com] }
regions:
  - name: eu
    servers: [{ address: 192.0.2.1, service: app.example.com }]
domains:
  - { name: app.example.com, regions: [eu] }
overwatch:
  geolocation: { default_region: eu }
"#;

    fn file() -> Config {
        Config::from_yaml_str(FILE).unwrap()
    }

    fn domain(name: &str, regions: &[&str], ttl: Option<u32>) -> DomainRecord {
        let mut d = DomainRecord::from_config(&file().domains[0]);
        d.name = DnsName::new(name).unwrap();
        d.regions = regions.iter().map(|r| (*r).to_owned()).collect();
        d.ttl = ttl;
        d
    }

    fn region(name: &str) -> RegionRecord {
        let mut r = RegionRecord::from_config(&file().regions[0]);
        r.name = name.to_owned();
        r
    }

    fn server(service: &str, address: &str, region: &str) -> ServerRecord {
        ServerRecord {
            backend: BackendId::new(DnsName::new(service).unwrap(), address.parse().unwrap(), 80),
            weight: 100,
            region: region.to_owned(),
        }
    }

    fn put(object: ApiObject, create: bool) -> ObjectChange {
        ObjectChange::Put { object, create }
    }

    /// A domain, a region and an IPv6 server, all made through the API.
    fn made() -> ApiObjects {
        let mut o = ApiObjects::default();
        o.put(ApiObject::Region(region("us")));
        o.put(ApiObject::Domain(domain(
            "new.example.com",
            &["us"],
            Some(30),
        )));
        o.put(ApiObject::Server(server(
            "new.example.com",
            "2001:db8::7",
            "us",
        )));
        o
    }

    #[test]
    fn objects_join_the_file_and_are_answered() {
        let cfg = made().merge(&file()).unwrap();
        let records = cfg.domain_records();
        let new = records
            .iter()
            .find(|d| d.name.as_str() == "new.example.com");
        let new = new.expect("the API's domain is in the effective config");
        assert_eq!(new.ttl, 30);
        assert_eq!(
            new.v6,
            ["2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap()]
        );
        assert_eq!(cfg.regions.len(), 2);
    }

    #[test]
    fn a_broken_rule_names_the_object_and_field() {
        let mut o = made();
        o.put(ApiObject::Domain(domain(
            "new.example.com",
            &["us"],
            Some(u32::MAX),
        )));
        let e = o.merge(&file()).unwrap_err();
        assert!(
            e.message
                .starts_with("domains[new.example.com].ttl: must be at most"),
            "{e:?}"
        );
        assert_eq!(
            e.object,
            Some(ObjectKey::Domain(DnsName::new("new.example.com").unwrap()))
        );

        let mut o = made();
        o.put(ApiObject::Domain(domain(
            "new.example.com",
            &["mars"],
            None,
        )));
        let e = o.merge(&file()).unwrap_err();
        assert!(
            e.message
                .starts_with("domains[new.example.com].regions[0]: no region named \"mars\""),
            "{e:?}"
        );

        let mut o = made();
        o.put(ApiObject::Server(server(
            "new.example.com",
            "192.0.2.9",
            "mars",
        )));
        let e = o.merge(&file()).unwrap_err();
        assert_eq!(
            e.message,
            "servers[new.example.com/192.0.2.9/80].region: no region named \"mars\" is configured"
        );

        // A server in a file region, broken by the config's own rule (weight), is named by its id.
        let mut o = ApiObjects::default();
        let mut s = server("app.example.com", "192.0.2.5", "eu");
        s.weight = 5000;
        o.put(ApiObject::Server(s));
        let e = o.merge(&file()).unwrap_err();
        assert!(
            e.message
                .starts_with("servers[app.example.com/192.0.2.5/80].weight: 5000"),
            "{e:?}"
        );
    }

    #[test]
    fn geolocation_mappings_need_the_section_and_a_known_region() {
        let mapping = |cidr: &str, region: &str| GeoMappingRecord {
            cidr: cidr.parse().unwrap(),
            region: region.to_owned(),
            comment: None,
        };
        let mut o = ApiObjects::default();
        o.put(ApiObject::GeoMapping(mapping("10.1.2.3/8", "eu")));
        let cfg = o.merge(&file()).unwrap();
        let g = cfg.geolocation().unwrap();
        assert_eq!(g.custom_mappings[0].cidr.to_string(), "10.0.0.0/8");

        o.put(ApiObject::GeoMapping(mapping("10.0.0.0/8", "mars")));
        let e = o.merge(&file()).unwrap_err();
        assert!(
            e.message
                .starts_with("geo.mappings[10.0.0.0/8].region: no region"),
            "{e:?}"
        );

        let mut bare = file();
        bare.overwatch.geolocation = None;
        let e = o.merge(&bare).unwrap_err();
        assert!(e.message.contains("geolocation is not configured"), "{e:?}");
    }

    #[test]
    fn changes_are_checked_against_the_file_and_the_store() {
        let (f, o) = (file(), made());
        let src = "/etc/opengslb.yaml";
        let app = domain("app.example.com", &["eu"], None);
        match check(&f, src, &o, &put(ApiObject::Domain(app), false)) {
            Err(Refusal::Conflict(m)) => assert!(m.contains(src), "{m}"),
            other => panic!("{other:?}"),
        }
        let file_server = ObjectKey::Server(server("app.example.com", "192.0.2.1", "eu").backend);
        assert!(matches!(
            check(&f, src, &o, &ObjectChange::Delete(file_server)),
            Err(Refusal::Conflict(_))
        ));
        let again = ApiObject::Region(region("us"));
        assert!(matches!(
            check(&f, src, &o, &put(again.clone(), true)),
            Err(Refusal::Conflict(_))
        ));
        assert_eq!(check(&f, src, &o, &put(again, false)), Ok(()));
        let unknown = ObjectKey::Region("asia".into());
        assert!(matches!(
            check(&f, src, &o, &ObjectChange::Delete(unknown)),
            Err(Refusal::NotFound(_))
        ));
        // The API's server still names the domain and the region.
        let used = ObjectKey::Domain(DnsName::new("new.example.com").unwrap());
        match check(&f, src, &o, &ObjectChange::Delete(used)) {
            Err(Refusal::Conflict(m)) => {
                assert!(m.contains("servers[new.example.com/2001:db8::7/80]"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        let bad = domain("other.example.net", &[], None);
        match check(&f, src, &o, &put(ApiObject::Domain(bad), true)) {
            Err(Refusal::Invalid(m)) => {
                assert!(m.starts_with("domains[other.example.net].name: "), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_object_the_file_no_longer_allows_is_left_out_alone() {
        let mut o = made();
        // Its domain is the file's; a new file drops the domain.
        o.put(ApiObject::Server(server(
            "app.example.com",
            "192.0.2.8",
            "eu",
        )));
        o.merge(&file()).unwrap();
        let mut f = file();
        f.domains.clear();
        f.regions[0].servers.clear();
        let (cfg, kept, left_out) = o.merge_lenient(&f);
        assert_eq!(left_out.len(), 1, "{left_out:?}");
        assert!(
            left_out[0]
                .message
                .contains("servers[app.example.com/192.0.2.8/80].service")
        );
        assert_eq!(kept.len(), 3, "the others stay");
        assert!(
            cfg.domains
                .iter()
                .any(|d| d.name.as_str() == "new.example.com")
        );
        // Still valid with the others, and a later change is checked against what is kept.
        assert_eq!(
            check(&f, "f", &o, &put(ApiObject::Region(region("asia")), true)),
            Ok(())
        );

        // The file now defines a region the API made: the stored copy is shadowed, and can go.
        let mut f = file();
        let mut us = f.regions[0].clone();
        us.name = "us".into();
        us.servers.clear();
        f.regions.push(us);
        let (_, kept, left_out) = o.merge_lenient(&f);
        assert!(!kept.regions.contains_key("us"), "{left_out:?}");
        let us = ObjectKey::Region("us".into());
        assert_eq!(check(&f, "f", &o, &ObjectChange::Delete(us)), Ok(()));
        assert!(matches!(
            check(&f, "f", &o, &put(ApiObject::Region(region("us")), false)),
            Err(Refusal::Conflict(_))
        ));
    }

    #[test]
    fn keys_name_ipv6_servers_unambiguously() {
        let s = server("app.example.com", "2001:db8::1", "eu");
        let key = ApiObject::Server(s).key();
        assert_eq!(key.to_string(), "servers[app.example.com/2001:db8::1/80]");
        assert_eq!(
            key.name().parse::<BackendId>().map(ObjectKey::Server),
            Ok(key)
        );
    }
}
