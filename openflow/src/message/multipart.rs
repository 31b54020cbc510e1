//! OFPT_MULTIPART_REQUEST / OFPT_MULTIPART_REPLY and their bodies.

use super::{
    Bucket, GroupType, MeterBand, Port, decode_bands, decode_buckets, decode_group_type,
    decode_instructions, decode_match, decode_port, encode_bands, encode_buckets, encode_port,
    expect_end, patch_len16, sub_by_len,
};
use crate::error::DecodeError;
use crate::instruction::Instruction;
use crate::oxm::Match;
use crate::wire::{Reader, pad_len, pad_to_8, put_fixed_str};
use bytes::BufMut;

/// `ofp_multipart_type` values.
pub mod mp_type {
    pub const DESC: u16 = 0;
    pub const FLOW: u16 = 1;
    pub const AGGREGATE: u16 = 2;
    pub const TABLE: u16 = 3;
    pub const PORT_STATS: u16 = 4;
    pub const QUEUE: u16 = 5;
    pub const GROUP: u16 = 6;
    pub const GROUP_DESC: u16 = 7;
    pub const GROUP_FEATURES: u16 = 8;
    pub const METER: u16 = 9;
    pub const METER_CONFIG: u16 = 10;
    pub const METER_FEATURES: u16 = 11;
    pub const TABLE_FEATURES: u16 = 12;
    pub const PORT_DESC: u16 = 13;
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// `OFPMPF_REQ_MORE` / `OFPMPF_REPLY_MORE`.
pub const OFPMPF_MORE: u16 = 1;

/// `OFPT_MULTIPART_REQUEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartRequest {
    /// `OFPMPF_REQ_*` flags.
    pub flags: u16,
    pub body: MultipartRequestBody,
}

/// `OFPT_MULTIPART_REPLY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartReply {
    /// `OFPMPF_REPLY_*` flags.
    pub flags: u16,
    pub body: MultipartReplyBody,
}

/// Request bodies, one per `ofp_multipart_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartRequestBody {
    Desc,
    Flow(FlowStatsRequest),
    Aggregate(FlowStatsRequest),
    Table,
    PortStats {
        port_no: u32,
    },
    Queue {
        port_no: u32,
        queue_id: u32,
    },
    Group {
        group_id: u32,
    },
    GroupDesc,
    GroupFeatures,
    Meter {
        meter_id: u32,
    },
    MeterConfig {
        meter_id: u32,
    },
    MeterFeatures,
    /// Empty to query, non-empty to set.
    TableFeatures(Vec<TableFeatures>),
    PortDesc,
    Experimenter(MultipartExperimenter),
}

/// Reply bodies, one per `ofp_multipart_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartReplyBody {
    Desc(Desc),
    Flow(Vec<FlowStats>),
    Aggregate(AggregateStats),
    Table(Vec<TableStats>),
    PortStats(Vec<PortStats>),
    Queue(Vec<QueueStats>),
    Group(Vec<GroupStats>),
    GroupDesc(Vec<GroupDesc>),
    GroupFeatures(GroupFeatures),
    Meter(Vec<MeterStats>),
    MeterConfig(Vec<MeterConfig>),
    MeterFeatures(MeterFeatures),
    TableFeatures(Vec<TableFeatures>),
    PortDesc(Vec<Port>),
    Experimenter(MultipartExperimenter),
}

/// `ofp_experimenter_multipart_header` and its payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultipartExperimenter {
    pub experimenter: u32,
    pub exp_type: u32,
    pub data: Vec<u8>,
}

/// `ofp_flow_stats_request` / `ofp_aggregate_stats_request`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowStatsRequest {
    pub table_id: u8,
    pub out_port: u32,
    pub out_group: u32,
    pub cookie: u64,
    pub cookie_mask: u64,
    pub match_: Match,
}

/// `ofp_desc`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Desc {
    pub mfr_desc: String,
    pub hw_desc: String,
    pub sw_desc: String,
    pub serial_num: String,
    pub dp_desc: String,
}

/// `ofp_flow_stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStats {
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: u16,
    pub cookie: u64,
    pub packet_count: u64,
    pub byte_count: u64,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

/// `ofp_aggregate_stats_reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AggregateStats {
    pub packet_count: u64,
    pub byte_count: u64,
    pub flow_count: u32,
}

/// `ofp_table_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableStats {
    pub table_id: u8,
    pub active_count: u32,
    pub lookup_count: u64,
    pub matched_count: u64,
}

/// `ofp_port_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortStats {
    pub port_no: u32,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_frame_err: u64,
    pub rx_over_err: u64,
    pub rx_crc_err: u64,
    pub collisions: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
}

/// `ofp_queue_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    pub port_no: u32,
    pub queue_id: u32,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
}

/// `ofp_group_stats`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupStats {
    pub group_id: u32,
    pub ref_count: u32,
    pub packet_count: u64,
    pub byte_count: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    /// `(packet_count, byte_count)` per bucket.
    pub bucket_stats: Vec<(u64, u64)>,
}

/// `ofp_group_desc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDesc {
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

/// `ofp_group_features`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupFeatures {
    pub types: u32,
    pub capabilities: u32,
    pub max_groups: [u32; 4],
    pub actions: [u32; 4],
}

/// `ofp_meter_stats`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MeterStats {
    pub meter_id: u32,
    pub flow_count: u32,
    pub packet_in_count: u64,
    pub byte_in_count: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    /// `(packet_band_count, byte_band_count)` per band.
    pub band_stats: Vec<(u64, u64)>,
}

/// `ofp_meter_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterConfig {
    pub flags: u16,
    pub meter_id: u32,
    pub bands: Vec<MeterBand>,
}

/// `ofp_meter_features`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeterFeatures {
    pub max_meter: u32,
    pub band_types: u32,
    pub capabilities: u32,
    pub max_bands: u8,
    pub max_color: u8,
}

/// `ofp_table_features`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableFeatures {
    pub table_id: u8,
    pub name: String,
    pub metadata_match: u64,
    pub metadata_write: u64,
    pub config: u32,
    pub max_entries: u32,
    pub properties: Vec<TableFeatureProp>,
}

/// An instruction id in a table-features property: type plus whatever
/// follows the 4-byte header (empty for standard instructions, the
/// experimenter id and more for experimenter ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructionId {
    pub inst_type: u16,
    pub data: Vec<u8>,
}

/// An action id in a table-features property (type plus trailing bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionId {
    pub action_type: u16,
    pub data: Vec<u8>,
}

/// An OXM id (32-bit header; experimenter OXMs carry the experimenter id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OxmId {
    pub header: u32,
    pub experimenter: Option<u32>,
}

/// `ofp_table_feature_prop_*`. `miss` selects the `*_MISS` variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableFeatureProp {
    Instructions {
        miss: bool,
        ids: Vec<InstructionId>,
    },
    NextTables {
        miss: bool,
        tables: Vec<u8>,
    },
    WriteActions {
        miss: bool,
        ids: Vec<ActionId>,
    },
    ApplyActions {
        miss: bool,
        ids: Vec<ActionId>,
    },
    Match(Vec<OxmId>),
    Wildcards(Vec<OxmId>),
    WriteSetfield {
        miss: bool,
        ids: Vec<OxmId>,
    },
    ApplySetfield {
        miss: bool,
        ids: Vec<OxmId>,
    },
    Experimenter {
        miss: bool,
        experimenter: u32,
        exp_type: u32,
        data: Vec<u8>,
    },
    /// A property type this codec does not know, kept losslessly.
    Unknown {
        prop_type: u16,
        data: Vec<u8>,
    },
}

// ---------------------------------------------------------------------------
// Decoding.

pub(super) fn decode_request(r: &mut Reader<'_>) -> Result<MultipartRequest, DecodeError> {
    use MultipartRequestBody as B;
    let ty = r.u16("multipart type")?;
    let flags = r.u16("multipart flags")?;
    r.skip(4, "pad")?;
    let body = match ty {
        mp_type::DESC => B::Desc,
        mp_type::FLOW => B::Flow(decode_flow_stats_request(r)?),
        mp_type::AGGREGATE => B::Aggregate(decode_flow_stats_request(r)?),
        mp_type::TABLE => B::Table,
        mp_type::PORT_STATS => {
            let port_no = r.u32("port_no")?;
            r.skip(4, "pad")?;
            B::PortStats { port_no }
        }
        mp_type::QUEUE => B::Queue {
            port_no: r.u32("port_no")?,
            queue_id: r.u32("queue_id")?,
        },
        mp_type::GROUP => {
            let group_id = r.u32("group_id")?;
            r.skip(4, "pad")?;
            B::Group { group_id }
        }
        mp_type::GROUP_DESC => B::GroupDesc,
        mp_type::GROUP_FEATURES => B::GroupFeatures,
        mp_type::METER | mp_type::METER_CONFIG => {
            let meter_id = r.u32("meter_id")?;
            r.skip(4, "pad")?;
            if ty == mp_type::METER {
                B::Meter { meter_id }
            } else {
                B::MeterConfig { meter_id }
            }
        }
        mp_type::METER_FEATURES => B::MeterFeatures,
        mp_type::TABLE_FEATURES => B::TableFeatures(decode_table_features_list(r)?),
        mp_type::PORT_DESC => B::PortDesc,
        mp_type::EXPERIMENTER => B::Experimenter(decode_mp_experimenter(r)?),
        t => return Err(DecodeError::UnknownMultipart(t)),
    };
    Ok(MultipartRequest { flags, body })
}

pub(super) fn decode_reply(r: &mut Reader<'_>) -> Result<MultipartReply, DecodeError> {
    use MultipartReplyBody as B;
    let ty = r.u16("multipart type")?;
    let flags = r.u16("multipart flags")?;
    r.skip(4, "pad")?;
    let body = match ty {
        mp_type::DESC => B::Desc(Desc {
            mfr_desc: r.fixed_str(256, "mfr_desc")?,
            hw_desc: r.fixed_str(256, "hw_desc")?,
            sw_desc: r.fixed_str(256, "sw_desc")?,
            serial_num: r.fixed_str(32, "serial_num")?,
            dp_desc: r.fixed_str(256, "dp_desc")?,
        }),
        mp_type::FLOW => {
            let mut v = Vec::new();
            while !r.is_empty() {
                let mut e = sub_by_len(r, 0, 56, "ofp_flow_stats")?;
                e.skip(2, "length")?;
                let table_id = e.u8("table_id")?;
                e.skip(1, "pad")?;
                let duration_sec = e.u32("duration_sec")?;
                let duration_nsec = e.u32("duration_nsec")?;
                let priority = e.u16("priority")?;
                let idle_timeout = e.u16("idle_timeout")?;
                let hard_timeout = e.u16("hard_timeout")?;
                let flags = e.u16("flags")?;
                e.skip(4, "pad")?;
                let cookie = e.u64("cookie")?;
                let packet_count = e.u64("packet_count")?;
                let byte_count = e.u64("byte_count")?;
                let match_ = decode_match(&mut e)?;
                let instructions = decode_instructions(&mut e)?;
                v.push(FlowStats {
                    table_id,
                    duration_sec,
                    duration_nsec,
                    priority,
                    idle_timeout,
                    hard_timeout,
                    flags,
                    cookie,
                    packet_count,
                    byte_count,
                    match_,
                    instructions,
                });
            }
            B::Flow(v)
        }
        mp_type::AGGREGATE => {
            let a = AggregateStats {
                packet_count: r.u64("packet_count")?,
                byte_count: r.u64("byte_count")?,
                flow_count: r.u32("flow_count")?,
            };
            r.skip(4, "pad")?;
            B::Aggregate(a)
        }
        mp_type::TABLE => {
            let mut v = Vec::new();
            while !r.is_empty() {
                let table_id = r.u8("table_id")?;
                r.skip(3, "pad")?;
                v.push(TableStats {
                    table_id,
                    active_count: r.u32("active_count")?,
                    lookup_count: r.u64("lookup_count")?,
                    matched_count: r.u64("matched_count")?,
                });
            }
            B::Table(v)
        }
        mp_type::PORT_STATS => {
            let mut v = Vec::new();
            while !r.is_empty() {
                let port_no = r.u32("port_no")?;
                r.skip(4, "pad")?;
                let mut c = [0u64; 12];
                for x in &mut c {
                    *x = r.u64("port counter")?;
                }
                v.push(PortStats {
                    port_no,
                    rx_packets: c[0],
                    tx_packets: c[1],
                    rx_bytes: c[2],
                    tx_bytes: c[3],
                    rx_dropped: c[4],
                    tx_dropped: c[5],
                    rx_errors: c[6],
                    tx_errors: c[7],
                    rx_frame_err: c[8],
                    rx_over_err: c[9],
                    rx_crc_err: c[10],
                    collisions: c[11],
                    duration_sec: r.u32("duration_sec")?,
                    duration_nsec: r.u32("duration_nsec")?,
                });
            }
            B::PortStats(v)
        }
        mp_type::QUEUE => {
            let mut v = Vec::new();
            while !r.is_empty() {
                v.push(QueueStats {
                    port_no: r.u32("port_no")?,
                    queue_id: r.u32("queue_id")?,
                    tx_bytes: r.u64("tx_bytes")?,
                    tx_packets: r.u64("tx_packets")?,
                    tx_errors: r.u64("tx_errors")?,
                    duration_sec: r.u32("duration_sec")?,
                    duration_nsec: r.u32("duration_nsec")?,
                });
            }
            B::Queue(v)
        }
        mp_type::GROUP => {
            let mut v = Vec::new();
            while !r.is_empty() {
                let mut e = sub_by_len(r, 0, 40, "ofp_group_stats")?;
                e.skip(4, "length+pad")?;
                let group_id = e.u32("group_id")?;
                let ref_count = e.u32("ref_count")?;
                e.skip(4, "pad")?;
                let mut g = GroupStats {
                    group_id,
                    ref_count,
                    packet_count: e.u64("packet_count")?,
                    byte_count: e.u64("byte_count")?,
                    duration_sec: e.u32("duration_sec")?,
                    duration_nsec: e.u32("duration_nsec")?,
                    bucket_stats: Vec::new(),
                };
                while !e.is_empty() {
                    g.bucket_stats
                        .push((e.u64("bucket packet_count")?, e.u64("bucket byte_count")?));
                }
                v.push(g);
            }
            B::Group(v)
        }
        mp_type::GROUP_DESC => {
            let mut v = Vec::new();
            while !r.is_empty() {
                let mut e = sub_by_len(r, 0, 8, "ofp_group_desc")?;
                e.skip(2, "length")?;
                let group_type = decode_group_type(e.u8("type")?)?;
                e.skip(1, "pad")?;
                let group_id = e.u32("group_id")?;
                v.push(GroupDesc {
                    group_type,
                    group_id,
                    buckets: decode_buckets(&mut e)?,
                });
            }
            B::GroupDesc(v)
        }
        mp_type::GROUP_FEATURES => {
            let types = r.u32("types")?;
            let capabilities = r.u32("capabilities")?;
            let mut max_groups = [0u32; 4];
            for x in &mut max_groups {
                *x = r.u32("max_groups")?;
            }
            let mut actions = [0u32; 4];
            for x in &mut actions {
                *x = r.u32("actions")?;
            }
            B::GroupFeatures(GroupFeatures {
                types,
                capabilities,
                max_groups,
                actions,
            })
        }
        mp_type::METER => {
            let mut v = Vec::new();
            while !r.is_empty() {
                let mut e = sub_by_len(r, 4, 40, "ofp_meter_stats")?;
                let meter_id = e.u32("meter_id")?;
                e.skip(8, "len+pad")?;
                let mut m = MeterStats {
                    meter_id,
                    flow_count: e.u32("flow_count")?,
                    packet_in_count: e.u64("packet_in_count")?,
                    byte_in_count: e.u64("byte_in_count")?,
                    duration_sec: e.u32("duration_sec")?,
                    duration_nsec: e.u32("duration_nsec")?,
                    band_stats: Vec::new(),
                };
                while !e.is_empty() {
                    m.band_stats
                        .push((e.u64("band packet count")?, e.u64("band byte count")?));
                }
                v.push(m);
            }
            B::Meter(v)
        }
        mp_type::METER_CONFIG => {
            let mut v = Vec::new();
            while !r.is_empty() {
                let mut e = sub_by_len(r, 0, 8, "ofp_meter_config")?;
                e.skip(2, "length")?;
                let flags = e.u16("flags")?;
                let meter_id = e.u32("meter_id")?;
                v.push(MeterConfig {
                    flags,
                    meter_id,
                    bands: decode_bands(&mut e)?,
                });
            }
            B::MeterConfig(v)
        }
        mp_type::METER_FEATURES => {
            let f = MeterFeatures {
                max_meter: r.u32("max_meter")?,
                band_types: r.u32("band_types")?,
                capabilities: r.u32("capabilities")?,
                max_bands: r.u8("max_bands")?,
                max_color: r.u8("max_color")?,
            };
            r.skip(2, "pad")?;
            B::MeterFeatures(f)
        }
        mp_type::TABLE_FEATURES => B::TableFeatures(decode_table_features_list(r)?),
        mp_type::PORT_DESC => {
            let mut v = Vec::new();
            while !r.is_empty() {
                v.push(decode_port(r)?);
            }
            B::PortDesc(v)
        }
        mp_type::EXPERIMENTER => B::Experimenter(decode_mp_experimenter(r)?),
        t => return Err(DecodeError::UnknownMultipart(t)),
    };
    Ok(MultipartReply { flags, body })
}

fn decode_mp_experimenter(r: &mut Reader<'_>) -> Result<MultipartExperimenter, DecodeError> {
    Ok(MultipartExperimenter {
        experimenter: r.u32("experimenter")?,
        exp_type: r.u32("exp_type")?,
        data: r.take_rest().to_vec(),
    })
}

fn decode_flow_stats_request(r: &mut Reader<'_>) -> Result<FlowStatsRequest, DecodeError> {
    let table_id = r.u8("table_id")?;
    r.skip(3, "pad")?;
    let out_port = r.u32("out_port")?;
    let out_group = r.u32("out_group")?;
    r.skip(4, "pad")?;
    Ok(FlowStatsRequest {
        table_id,
        out_port,
        out_group,
        cookie: r.u64("cookie")?,
        cookie_mask: r.u64("cookie_mask")?,
        match_: decode_match(r)?,
    })
}

fn decode_table_features_list(r: &mut Reader<'_>) -> Result<Vec<TableFeatures>, DecodeError> {
    let mut v = Vec::new();
    while !r.is_empty() {
        let mut e = sub_by_len(r, 0, 64, "ofp_table_features")?;
        e.skip(2, "length")?;
        let table_id = e.u8("table_id")?;
        e.skip(5, "pad")?;
        let mut t = TableFeatures {
            table_id,
            name: e.fixed_str(32, "table name")?,
            metadata_match: e.u64("metadata_match")?,
            metadata_write: e.u64("metadata_write")?,
            config: e.u32("config")?,
            max_entries: e.u32("max_entries")?,
            properties: Vec::new(),
        };
        while !e.is_empty() {
            t.properties.push(decode_table_prop(&mut e)?);
        }
        v.push(t);
    }
    Ok(v)
}

fn decode_table_prop(r: &mut Reader<'_>) -> Result<TableFeatureProp, DecodeError> {
    use TableFeatureProp as P;
    let ty = r.peek_u16(0, "table feature prop type")?;
    let mut p = sub_by_len(r, 2, 4, "table feature prop")?;
    let len = p.remaining();
    r.skip(pad_len(len), "table feature prop padding")?;
    p.skip(4, "prop header")?;
    let miss = ty & 1 == 1;
    let prop = match ty {
        0 | 1 => P::Instructions {
            miss,
            ids: decode_ids(&mut p)?
                .into_iter()
                .map(|(inst_type, data)| InstructionId { inst_type, data })
                .collect(),
        },
        2 | 3 => P::NextTables {
            miss,
            tables: p.take_rest().to_vec(),
        },
        4..=7 => {
            let ids = decode_ids(&mut p)?
                .into_iter()
                .map(|(action_type, data)| ActionId { action_type, data })
                .collect();
            if ty < 6 {
                P::WriteActions { miss, ids }
            } else {
                P::ApplyActions { miss, ids }
            }
        }
        8 => P::Match(decode_oxm_ids(&mut p)?),
        10 => P::Wildcards(decode_oxm_ids(&mut p)?),
        12 | 13 => P::WriteSetfield {
            miss,
            ids: decode_oxm_ids(&mut p)?,
        },
        14 | 15 => P::ApplySetfield {
            miss,
            ids: decode_oxm_ids(&mut p)?,
        },
        0xfffe | 0xffff => P::Experimenter {
            miss,
            experimenter: p.u32("experimenter")?,
            exp_type: p.u32("exp_type")?,
            data: p.take_rest().to_vec(),
        },
        _ => P::Unknown {
            prop_type: ty,
            data: p.take_rest().to_vec(),
        },
    };
    expect_end(&p, "table feature prop")?;
    Ok(prop)
}

/// Decodes a packed list of `(type, len, data)` ids.
fn decode_ids(p: &mut Reader<'_>) -> Result<Vec<(u16, Vec<u8>)>, DecodeError> {
    let mut v = Vec::new();
    while !p.is_empty() {
        let ty = p.peek_u16(0, "id type")?;
        let mut e = sub_by_len(p, 2, 4, "id")?;
        e.skip(4, "id header")?;
        v.push((ty, e.take_rest().to_vec()));
    }
    Ok(v)
}

fn decode_oxm_ids(p: &mut Reader<'_>) -> Result<Vec<OxmId>, DecodeError> {
    let mut v = Vec::new();
    while !p.is_empty() {
        let header = p.u32("oxm id")?;
        let experimenter = if header >> 16 == 0xffff {
            Some(p.u32("oxm id experimenter")?)
        } else {
            None
        };
        v.push(OxmId {
            header,
            experimenter,
        });
    }
    Ok(v)
}

// ---------------------------------------------------------------------------
// Encoding.

fn request_type(b: &MultipartRequestBody) -> u16 {
    use MultipartRequestBody as B;
    match b {
        B::Desc => mp_type::DESC,
        B::Flow(_) => mp_type::FLOW,
        B::Aggregate(_) => mp_type::AGGREGATE,
        B::Table => mp_type::TABLE,
        B::PortStats { .. } => mp_type::PORT_STATS,
        B::Queue { .. } => mp_type::QUEUE,
        B::Group { .. } => mp_type::GROUP,
        B::GroupDesc => mp_type::GROUP_DESC,
        B::GroupFeatures => mp_type::GROUP_FEATURES,
        B::Meter { .. } => mp_type::METER,
        B::MeterConfig { .. } => mp_type::METER_CONFIG,
        B::MeterFeatures => mp_type::METER_FEATURES,
        B::TableFeatures(_) => mp_type::TABLE_FEATURES,
        B::PortDesc => mp_type::PORT_DESC,
        B::Experimenter(_) => mp_type::EXPERIMENTER,
    }
}

fn reply_type(b: &MultipartReplyBody) -> u16 {
    use MultipartReplyBody as B;
    match b {
        B::Desc(_) => mp_type::DESC,
        B::Flow(_) => mp_type::FLOW,
        B::Aggregate(_) => mp_type::AGGREGATE,
        B::Table(_) => mp_type::TABLE,
        B::PortStats(_) => mp_type::PORT_STATS,
        B::Queue(_) => mp_type::QUEUE,
        B::Group(_) => mp_type::GROUP,
        B::GroupDesc(_) => mp_type::GROUP_DESC,
        B::GroupFeatures(_) => mp_type::GROUP_FEATURES,
        B::Meter(_) => mp_type::METER,
        B::MeterConfig(_) => mp_type::METER_CONFIG,
        B::MeterFeatures(_) => mp_type::METER_FEATURES,
        B::TableFeatures(_) => mp_type::TABLE_FEATURES,
        B::PortDesc(_) => mp_type::PORT_DESC,
        B::Experimenter(_) => mp_type::EXPERIMENTER,
    }
}

impl MultipartRequestBody {
    /// The `ofp_multipart_type`.
    pub fn mp_type(&self) -> u16 {
        request_type(self)
    }
}

impl MultipartReplyBody {
    /// The `ofp_multipart_type`.
    pub fn mp_type(&self) -> u16 {
        reply_type(self)
    }
}

pub(super) fn encode_request(m: &MultipartRequest, out: &mut Vec<u8>) {
    use MultipartRequestBody as B;
    out.put_u16(request_type(&m.body));
    out.put_u16(m.flags);
    out.put_u32(0);
    match &m.body {
        B::Desc | B::Table | B::GroupDesc | B::GroupFeatures | B::MeterFeatures | B::PortDesc => {}
        B::Flow(f) | B::Aggregate(f) => {
            out.put_u8(f.table_id);
            out.put_bytes(0, 3);
            out.put_u32(f.out_port);
            out.put_u32(f.out_group);
            out.put_u32(0);
            out.put_u64(f.cookie);
            out.put_u64(f.cookie_mask);
            f.match_.encode(out);
        }
        B::PortStats { port_no } => {
            out.put_u32(*port_no);
            out.put_u32(0);
        }
        B::Queue { port_no, queue_id } => {
            out.put_u32(*port_no);
            out.put_u32(*queue_id);
        }
        B::Group { group_id: id } | B::Meter { meter_id: id } | B::MeterConfig { meter_id: id } => {
            out.put_u32(*id);
            out.put_u32(0);
        }
        B::TableFeatures(v) => encode_table_features(v, out),
        B::Experimenter(e) => encode_mp_experimenter(e, out),
    }
}

pub(super) fn encode_reply(m: &MultipartReply, out: &mut Vec<u8>) {
    use MultipartReplyBody as B;
    out.put_u16(reply_type(&m.body));
    out.put_u16(m.flags);
    out.put_u32(0);
    match &m.body {
        B::Desc(d) => {
            put_fixed_str(out, &d.mfr_desc, 256);
            put_fixed_str(out, &d.hw_desc, 256);
            put_fixed_str(out, &d.sw_desc, 256);
            put_fixed_str(out, &d.serial_num, 32);
            put_fixed_str(out, &d.dp_desc, 256);
        }
        B::Flow(v) => {
            for f in v {
                let start = out.len();
                out.put_u16(0);
                out.put_u8(f.table_id);
                out.put_u8(0);
                out.put_u32(f.duration_sec);
                out.put_u32(f.duration_nsec);
                out.put_u16(f.priority);
                out.put_u16(f.idle_timeout);
                out.put_u16(f.hard_timeout);
                out.put_u16(f.flags);
                out.put_u32(0);
                out.put_u64(f.cookie);
                out.put_u64(f.packet_count);
                out.put_u64(f.byte_count);
                f.match_.encode(out);
                Instruction::encode_list(&f.instructions, out);
                patch_len16(out, start, start);
            }
        }
        B::Aggregate(a) => {
            out.put_u64(a.packet_count);
            out.put_u64(a.byte_count);
            out.put_u32(a.flow_count);
            out.put_u32(0);
        }
        B::Table(v) => {
            for t in v {
                out.put_u8(t.table_id);
                out.put_bytes(0, 3);
                out.put_u32(t.active_count);
                out.put_u64(t.lookup_count);
                out.put_u64(t.matched_count);
            }
        }
        B::PortStats(v) => {
            for p in v {
                out.put_u32(p.port_no);
                out.put_u32(0);
                for c in [
                    p.rx_packets,
                    p.tx_packets,
                    p.rx_bytes,
                    p.tx_bytes,
                    p.rx_dropped,
                    p.tx_dropped,
                    p.rx_errors,
                    p.tx_errors,
                    p.rx_frame_err,
                    p.rx_over_err,
                    p.rx_crc_err,
                    p.collisions,
                ] {
                    out.put_u64(c);
                }
                out.put_u32(p.duration_sec);
                out.put_u32(p.duration_nsec);
            }
        }
        B::Queue(v) => {
            for q in v {
                out.put_u32(q.port_no);
                out.put_u32(q.queue_id);
                out.put_u64(q.tx_bytes);
                out.put_u64(q.tx_packets);
                out.put_u64(q.tx_errors);
                out.put_u32(q.duration_sec);
                out.put_u32(q.duration_nsec);
            }
        }
        B::Group(v) => {
            for g in v {
                let start = out.len();
                out.put_u16(0);
                out.put_u16(0);
                out.put_u32(g.group_id);
                out.put_u32(g.ref_count);
                out.put_u32(0);
                out.put_u64(g.packet_count);
                out.put_u64(g.byte_count);
                out.put_u32(g.duration_sec);
                out.put_u32(g.duration_nsec);
                for (p, b) in &g.bucket_stats {
                    out.put_u64(*p);
                    out.put_u64(*b);
                }
                patch_len16(out, start, start);
            }
        }
        B::GroupDesc(v) => {
            for g in v {
                let start = out.len();
                out.put_u16(0);
                out.put_u8(g.group_type as u8);
                out.put_u8(0);
                out.put_u32(g.group_id);
                encode_buckets(&g.buckets, out);
                patch_len16(out, start, start);
            }
        }
        B::GroupFeatures(g) => {
            out.put_u32(g.types);
            out.put_u32(g.capabilities);
            for x in g.max_groups.iter().chain(&g.actions) {
                out.put_u32(*x);
            }
        }
        B::Meter(v) => {
            for m in v {
                let start = out.len();
                out.put_u32(m.meter_id);
                out.put_u16(0);
                out.put_bytes(0, 6);
                out.put_u32(m.flow_count);
                out.put_u64(m.packet_in_count);
                out.put_u64(m.byte_in_count);
                out.put_u32(m.duration_sec);
                out.put_u32(m.duration_nsec);
                for (p, b) in &m.band_stats {
                    out.put_u64(*p);
                    out.put_u64(*b);
                }
                patch_len16(out, start + 4, start);
            }
        }
        B::MeterConfig(v) => {
            for m in v {
                let start = out.len();
                out.put_u16(0);
                out.put_u16(m.flags);
                out.put_u32(m.meter_id);
                encode_bands(&m.bands, out);
                patch_len16(out, start, start);
            }
        }
        B::MeterFeatures(f) => {
            out.put_u32(f.max_meter);
            out.put_u32(f.band_types);
            out.put_u32(f.capabilities);
            out.put_u8(f.max_bands);
            out.put_u8(f.max_color);
            out.put_u16(0);
        }
        B::TableFeatures(v) => encode_table_features(v, out),
        B::PortDesc(v) => {
            for p in v {
                encode_port(p, out);
            }
        }
        B::Experimenter(e) => encode_mp_experimenter(e, out),
    }
}

fn encode_mp_experimenter(e: &MultipartExperimenter, out: &mut Vec<u8>) {
    out.put_u32(e.experimenter);
    out.put_u32(e.exp_type);
    out.extend_from_slice(&e.data);
}

fn encode_table_features(v: &[TableFeatures], out: &mut Vec<u8>) {
    for t in v {
        let start = out.len();
        out.put_u16(0);
        out.put_u8(t.table_id);
        out.put_bytes(0, 5);
        put_fixed_str(out, &t.name, 32);
        out.put_u64(t.metadata_match);
        out.put_u64(t.metadata_write);
        out.put_u32(t.config);
        out.put_u32(t.max_entries);
        for p in &t.properties {
            encode_table_prop(p, out);
        }
        patch_len16(out, start, start);
    }
}

fn encode_table_prop(p: &TableFeatureProp, out: &mut Vec<u8>) {
    use TableFeatureProp as P;
    let start = out.len();
    let m = |miss: bool| miss as u16;
    let ty = match p {
        P::Instructions { miss, .. } => m(*miss),
        P::NextTables { miss, .. } => 2 + m(*miss),
        P::WriteActions { miss, .. } => 4 + m(*miss),
        P::ApplyActions { miss, .. } => 6 + m(*miss),
        P::Match(_) => 8,
        P::Wildcards(_) => 10,
        P::WriteSetfield { miss, .. } => 12 + m(*miss),
        P::ApplySetfield { miss, .. } => 14 + m(*miss),
        P::Experimenter { miss, .. } => 0xfffe + m(*miss),
        P::Unknown { prop_type, .. } => *prop_type,
    };
    out.put_u16(ty);
    out.put_u16(0);
    let put_id = |out: &mut Vec<u8>, ty: u16, data: &[u8]| {
        let s = out.len();
        out.put_u16(ty);
        out.put_u16(0);
        out.extend_from_slice(data);
        patch_len16(out, s + 2, s);
    };
    match p {
        P::Instructions { ids, .. } => {
            for i in ids {
                put_id(out, i.inst_type, &i.data);
            }
        }
        P::WriteActions { ids, .. } | P::ApplyActions { ids, .. } => {
            for i in ids {
                put_id(out, i.action_type, &i.data);
            }
        }
        P::NextTables { tables, .. } => out.extend_from_slice(tables),
        P::Match(ids)
        | P::Wildcards(ids)
        | P::WriteSetfield { ids, .. }
        | P::ApplySetfield { ids, .. } => {
            for id in ids {
                out.put_u32(id.header);
                if let Some(e) = id.experimenter {
                    out.put_u32(e);
                }
            }
        }
        P::Experimenter {
            experimenter,
            exp_type,
            data,
            ..
        } => {
            out.put_u32(*experimenter);
            out.put_u32(*exp_type);
            out.extend_from_slice(data);
        }
        P::Unknown { data, .. } => out.extend_from_slice(data),
    }
    patch_len16(out, start + 2, start);
    pad_to_8(out, start);
}
