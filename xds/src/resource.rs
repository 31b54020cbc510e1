//! Resource types, encoded resources and consistency-checked snapshots.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, route, route_action};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

/// Type URL prefix shared by every v3 resource.
pub const TYPE_PREFIX: &str = "type.googleapis.com/";
/// `envoy.config.cluster.v3.Cluster`.
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// `envoy.config.endpoint.v3.ClusterLoadAssignment`.
pub const ENDPOINT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// `envoy.config.listener.v3.Listener`.
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// `envoy.config.route.v3.RouteConfiguration`.
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

/// The resource types this server serves, in ADS push order: CDS before EDS, LDS before RDS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum ResourceType {
    /// CDS.
    Cluster,
    /// EDS.
    Endpoint,
    /// LDS.
    Listener,
    /// RDS.
    Route,
}

impl ResourceType {
    /// All types, in warming/push order.
    pub const ALL: [ResourceType; 4] = [Self::Cluster, Self::Endpoint, Self::Listener, Self::Route];

    /// The v3 type URL.
    pub fn type_url(self) -> &'static str {
        match self {
            Self::Cluster => CLUSTER_TYPE,
            Self::Endpoint => ENDPOINT_TYPE,
            Self::Listener => LISTENER_TYPE,
            Self::Route => ROUTE_TYPE,
        }
    }

    /// Parses a type URL; `None` for types we do not serve.
    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// Short name (`CDS`, `EDS`, `LDS`, `RDS`).
    pub fn short(self) -> &'static str {
        match self {
            Self::Cluster => "CDS",
            Self::Endpoint => "EDS",
            Self::Listener => "LDS",
            Self::Route => "RDS",
        }
    }

    /// Index into per-type arrays.
    pub fn idx(self) -> usize {
        self as usize
    }

    /// Whether an empty SotW subscription means "everything" (legacy wildcard: LDS and CDS).
    pub fn wildcard_by_default(self) -> bool {
        matches!(self, Self::Cluster | Self::Listener)
    }
}

/// One encoded resource with its content version and outgoing references.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedResource {
    /// Resource name.
    pub name: String,
    /// Content hash, used as the per-resource version in delta xDS.
    pub version: String,
    /// The packed resource.
    pub any: Any,
    /// Names of resources of other types this one needs (`(type, name)`).
    pub refs: Vec<(ResourceType, String)>,
    /// `any` encoded once as a SotW `DiscoveryResponse.resources` entry, shared by
    /// every stream that sends it.
    pub sotw_entry: bytes::Bytes,
    /// `Resource { name, version, resource: any }` encoded once as a
    /// `DeltaDiscoveryResponse.resources` entry.
    pub delta_entry: bytes::Bytes,
}

fn hash_hex(bytes: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}", h.finish())
}

impl EncodedResource {
    fn new<T: Message + Name>(name: String, msg: &T, refs: Vec<(ResourceType, String)>) -> Self {
        let value = msg.encode_to_vec();
        let any = Any {
            type_url: T::type_url(),
            value,
        };
        Self::from_any(name, any, refs)
    }

    /// A resource from an already packed message (any content; e.g. a bad update in
    /// tests); its version is the hash of the packed bytes.
    pub fn from_any(name: String, any: Any, refs: Vec<(ResourceType, String)>) -> Self {
        let version = hash_hex(&any.value);
        let sotw_entry = crate::wire::resources_entry(&any);
        let delta_entry = crate::wire::resources_entry(
            &envoy_types::pb::envoy::service::discovery::v3::Resource {
                name: name.clone(),
                version: version.clone(),
                resource: Some(any.clone()),
                ..Default::default()
            },
        );
        Self {
            name,
            version,
            any,
            refs,
            sotw_entry,
            delta_entry,
        }
    }

    /// A Cluster; EDS clusters reference their ClusterLoadAssignment.
    pub fn cluster(c: &Cluster) -> Self {
        let mut refs = Vec::new();
        let eds = i32::from(cluster::DiscoveryType::Eds);
        if matches!(c.cluster_discovery_type, Some(cluster::ClusterDiscoveryType::Type(t)) if t == eds)
        {
            let svc = c
                .eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.as_str())
                .unwrap_or("");
            let n = if svc.is_empty() { c.name.as_str() } else { svc };
            refs.push((ResourceType::Endpoint, n.to_string()));
        }
        Self::new(c.name.clone(), c, refs)
    }

    /// A ClusterLoadAssignment.
    pub fn endpoint(e: &ClusterLoadAssignment) -> Self {
        Self::new(e.cluster_name.clone(), e, Vec::new())
    }

    /// A Listener; HttpConnectionManagers with RDS reference their RouteConfiguration,
    /// inline route configs reference their clusters.
    pub fn listener(l: &Listener) -> Self {
        let mut refs = Vec::new();
        let mut hcm_any = Vec::new();
        if let Some(api) = l
            .api_listener
            .as_ref()
            .and_then(|a| a.api_listener.as_ref())
        {
            hcm_any.push(api);
        }
        for fc in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
            for f in &fc.filters {
                if let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type {
                    hcm_any.push(any);
                }
            }
        }
        for any in hcm_any {
            if any.type_url != HttpConnectionManager::type_url() {
                continue;
            }
            let Ok(hcm) = HttpConnectionManager::decode(any.value.as_slice()) else {
                continue;
            };
            match hcm.route_specifier {
                Some(http_connection_manager::RouteSpecifier::Rds(rds)) => {
                    refs.push((ResourceType::Route, rds.route_config_name));
                }
                Some(http_connection_manager::RouteSpecifier::RouteConfig(rc)) => {
                    refs.extend(route_cluster_refs(&rc));
                }
                _ => {}
            }
        }
        Self::new(l.name.clone(), l, refs)
    }

    /// A RouteConfiguration; references every cluster its routes name.
    pub fn route(r: &RouteConfiguration) -> Self {
        Self::new(r.name.clone(), r, route_cluster_refs(r))
    }
}

fn route_cluster_refs(r: &RouteConfiguration) -> Vec<(ResourceType, String)> {
    let mut out = Vec::new();
    for vh in &r.virtual_hosts {
        for rt in &vh.routes {
            let Some(route::Action::Route(ra)) = &rt.action else {
                continue;
            };
            match &ra.cluster_specifier {
                Some(route_action::ClusterSpecifier::Cluster(c)) => {
                    out.push((ResourceType::Cluster, c.clone()));
                }
                Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
                    for c in &w.clusters {
                        out.push((ResourceType::Cluster, c.name.clone()));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// All resources of one type in a snapshot, with the type's version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeResources {
    /// Version of this type's set (content hash of the whole set unless given explicitly).
    pub version: String,
    /// Resources by name.
    pub items: BTreeMap<String, Arc<EncodedResource>>,
}

/// Why a snapshot cannot be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Some referenced resources are absent.
    #[error("inconsistent snapshot: missing {}", .0.join(", "))]
    Missing(Vec<String>),
    /// Two resources of one type share a name.
    #[error("duplicate {0} resource {1:?}")]
    Duplicate(&'static str, String),
}

/// A complete, versioned configuration for one node (go-control-plane's `Snapshot`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Label given by the producer (e.g. the controller's revision).
    pub label: String,
    types: [TypeResources; 4],
}

/// Builds a [`Snapshot`].
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    label: String,
    versions: [Option<String>; 4],
    items: [Vec<EncodedResource>; 4],
}

impl SnapshotBuilder {
    /// Adds clusters.
    pub fn clusters<'a>(mut self, cs: impl IntoIterator<Item = &'a Cluster>) -> Self {
        self.items[0].extend(cs.into_iter().map(EncodedResource::cluster));
        self
    }
    /// Adds endpoint assignments.
    pub fn endpoints<'a>(
        mut self,
        es: impl IntoIterator<Item = &'a ClusterLoadAssignment>,
    ) -> Self {
        self.items[1].extend(es.into_iter().map(EncodedResource::endpoint));
        self
    }
    /// Adds listeners.
    pub fn listeners<'a>(mut self, ls: impl IntoIterator<Item = &'a Listener>) -> Self {
        self.items[2].extend(ls.into_iter().map(EncodedResource::listener));
        self
    }
    /// Adds route configurations.
    pub fn routes<'a>(mut self, rs: impl IntoIterator<Item = &'a RouteConfiguration>) -> Self {
        self.items[3].extend(rs.into_iter().map(EncodedResource::route));
        self
    }
    /// Adds an already encoded resource (any content; used for tests of bad updates).
    pub fn raw(mut self, ty: ResourceType, r: EncodedResource) -> Self {
        self.items[ty.idx()].push(r);
        self
    }
    /// Forces the version string of one type instead of the content hash.
    pub fn version(mut self, ty: ResourceType, v: impl Into<String>) -> Self {
        self.versions[ty.idx()] = Some(v.into());
        self
    }
    /// Adds everything from a translated resource set.
    pub fn resources(self, r: &crate::translate::Resources) -> Self {
        self.clusters(&r.clusters)
            .endpoints(&r.endpoints)
            .listeners(&r.listeners)
            .routes(&r.routes)
    }

    /// Finishes; fails on duplicate names. Consistency is checked by [`Snapshot::check`]
    /// (and by the cache before publication).
    pub fn build(self) -> Result<Snapshot, SnapshotError> {
        let mut snap = Snapshot {
            label: self.label,
            ..Default::default()
        };
        for (i, items) in self.items.into_iter().enumerate() {
            let ty = ResourceType::ALL[i];
            let t = &mut snap.types[i];
            let mut h = DefaultHasher::new();
            for r in items {
                if t.items.contains_key(&r.name) {
                    return Err(SnapshotError::Duplicate(ty.short(), r.name));
                }
                t.items.insert(r.name.clone(), Arc::new(r));
            }
            for (n, r) in &t.items {
                n.hash(&mut h);
                r.version.hash(&mut h);
            }
            t.version = match &self.versions[i] {
                Some(v) => v.clone(),
                None if t.items.is_empty() => "empty".into(),
                None => format!("{:016x}", h.finish()),
            };
        }
        Ok(snap)
    }
}

impl Snapshot {
    /// Starts a snapshot with a producer label.
    pub fn builder(label: impl Into<String>) -> SnapshotBuilder {
        SnapshotBuilder {
            label: label.into(),
            ..Default::default()
        }
    }

    /// Resources of one type.
    pub fn get(&self, ty: ResourceType) -> &TypeResources {
        &self.types[ty.idx()]
    }

    /// Version of one type.
    pub fn version(&self, ty: ResourceType) -> &str {
        &self.types[ty.idx()].version
    }

    /// Every referenced resource must be present: Listener → RouteConfiguration,
    /// RouteConfiguration/inline routes → Cluster, EDS Cluster → ClusterLoadAssignment.
    pub fn check(&self) -> Result<(), SnapshotError> {
        let mut missing = BTreeSet::new();
        for t in &self.types {
            for r in t.items.values() {
                for (rty, name) in &r.refs {
                    if !self.types[rty.idx()].items.contains_key(name) {
                        missing.insert(format!(
                            "{} {name:?} (referenced by {:?})",
                            rty.short(),
                            r.name
                        ));
                    }
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(SnapshotError::Missing(missing.into_iter().collect()))
        }
    }
}
