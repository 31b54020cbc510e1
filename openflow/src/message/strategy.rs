//! proptest strategies for every message type.
//!
//! Action and instruction lists come from `crate::action::strategy`.

use super::*;
use crate::oxm::FieldId;
use proptest::collection::vec;
use proptest::prelude::*;

/// Action lists used inside messages: the action module's full strategy
/// (OpenFlow and Nicira actions).
pub fn arb_actions() -> BoxedStrategy<Vec<Action>> {
    crate::action::strategy::actions().boxed()
}

/// Instruction lists: each type at most once, as the decoder requires.
pub fn arb_instructions() -> BoxedStrategy<Vec<Instruction>> {
    crate::action::strategy::instructions().boxed()
}

/// Matches that satisfy their prerequisites (so flow-mod adds decode).
pub fn arb_match() -> BoxedStrategy<Match> {
    (
        proptest::option::of(any::<u32>()),
        proptest::option::of((any::<u32>(), any::<u32>())),
        proptest::option::of((any::<u64>(), any::<u64>())),
        any::<bool>(),
    )
        .prop_map(|(in_port, ipv4, metadata, ip)| {
            let mut m = Match::new();
            if let Some(p) = in_port {
                m.set(FieldId::InPort, p as u128);
            }
            if ip || ipv4.is_some() {
                m.set(FieldId::EthType, 0x0800);
            }
            if let Some((v, k)) = ipv4 {
                m.set_masked(FieldId::Ipv4Dst, v as u128, k as u128);
            }
            if let Some((v, k)) = metadata {
                m.set_masked(FieldId::Metadata, v as u128, k as u128);
            }
            m
        })
        .boxed()
}

fn bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    vec(any::<u8>(), 0..max).boxed()
}

/// Bytes whose length is a multiple of 8.
fn bytes8(max_words: usize) -> BoxedStrategy<Vec<u8>> {
    vec(any::<[u8; 8]>(), 0..max_words)
        .prop_map(|v| v.concat())
        .boxed()
}

fn name(max: usize) -> BoxedStrategy<String> {
    proptest::string::string_regex(&format!("[a-zA-Z0-9_-]{{0,{max}}}"))
        .unwrap()
        .boxed()
}

fn arb_port() -> BoxedStrategy<Port> {
    (any::<u32>(), any::<[u8; 6]>(), name(15), any::<[u32; 8]>())
        .prop_map(|(p, hw, n, v)| Port {
            port_no: p,
            hw_addr: hw,
            name: n,
            config: v[0],
            state: v[1],
            curr: v[2],
            advertised: v[3],
            supported: v[4],
            peer: v[5],
            curr_speed: v[6],
            max_speed: v[7],
        })
        .boxed()
}

fn arb_bucket() -> BoxedStrategy<Bucket> {
    (any::<u16>(), any::<u32>(), any::<u32>(), arb_actions())
        .prop_map(|(w, p, g, a)| Bucket {
            weight: w,
            watch_port: p,
            watch_group: g,
            actions: a,
        })
        .boxed()
}

fn arb_group_type() -> BoxedStrategy<GroupType> {
    prop_oneof![
        Just(GroupType::All),
        Just(GroupType::Select),
        Just(GroupType::Indirect),
        Just(GroupType::FastFailover)
    ]
    .boxed()
}

fn arb_band() -> BoxedStrategy<MeterBand> {
    prop_oneof![
        (any::<u32>(), any::<u32>())
            .prop_map(|(rate, burst_size)| MeterBand::Drop { rate, burst_size }),
        (any::<u32>(), any::<u32>(), any::<u8>()).prop_map(|(rate, burst_size, prec_level)| {
            MeterBand::DscpRemark {
                rate,
                burst_size,
                prec_level,
            }
        }),
        (any::<u32>(), any::<u32>(), any::<u32>(), bytes8(2)).prop_map(
            |(rate, burst_size, experimenter, data)| {
                MeterBand::Experimenter {
                    rate,
                    burst_size,
                    experimenter,
                    data,
                }
            }
        ),
    ]
    .boxed()
}

fn arb_meter_flags() -> BoxedStrategy<u16> {
    (prop_oneof![Just(1u16), Just(2u16)], 0u16..4)
        .prop_map(|(unit, rest)| unit | (rest << 2))
        .boxed()
}

fn arb_flow_stats_request() -> BoxedStrategy<FlowStatsRequest> {
    (
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        arb_match(),
    )
        .prop_map(
            |(table_id, out_port, out_group, cookie, cookie_mask, match_)| FlowStatsRequest {
                table_id,
                out_port,
                out_group,
                cookie,
                cookie_mask,
                match_,
            },
        )
        .boxed()
}

fn arb_oxm_ids() -> BoxedStrategy<Vec<OxmId>> {
    vec(
        prop_oneof![
            (0u32..0xffff_0000).prop_map(|header| OxmId {
                header,
                experimenter: None
            }),
            (any::<u16>(), any::<u32>()).prop_map(|(low, e)| OxmId {
                header: 0xffff_0000 | low as u32,
                experimenter: Some(e)
            }),
        ],
        0..4,
    )
    .boxed()
}

fn arb_ids() -> impl Strategy<Value = Vec<(u16, Vec<u8>)>> {
    vec((any::<u16>(), bytes(6)), 0..4)
}

fn arb_table_prop() -> BoxedStrategy<TableFeatureProp> {
    use TableFeatureProp as P;
    prop_oneof![
        (any::<bool>(), arb_ids()).prop_map(|(miss, ids)| P::Instructions {
            miss,
            ids: ids
                .into_iter()
                .map(|(inst_type, data)| InstructionId { inst_type, data })
                .collect()
        }),
        (any::<bool>(), bytes(10)).prop_map(|(miss, tables)| P::NextTables { miss, tables }),
        (any::<bool>(), any::<bool>(), arb_ids()).prop_map(|(miss, apply, ids)| {
            let ids = ids
                .into_iter()
                .map(|(action_type, data)| ActionId { action_type, data })
                .collect();
            if apply {
                P::ApplyActions { miss, ids }
            } else {
                P::WriteActions { miss, ids }
            }
        }),
        arb_oxm_ids().prop_map(P::Match),
        arb_oxm_ids().prop_map(P::Wildcards),
        (any::<bool>(), arb_oxm_ids()).prop_map(|(miss, ids)| P::WriteSetfield { miss, ids }),
        (any::<bool>(), arb_oxm_ids()).prop_map(|(miss, ids)| P::ApplySetfield { miss, ids }),
        (any::<bool>(), any::<u32>(), any::<u32>(), bytes(9)).prop_map(
            |(miss, experimenter, exp_type, data)| P::Experimenter {
                miss,
                experimenter,
                exp_type,
                data
            }
        ),
        (16u16..0xfffe, bytes(9)).prop_map(|(prop_type, data)| P::Unknown { prop_type, data }),
    ]
    .boxed()
}

fn arb_table_features() -> BoxedStrategy<TableFeatures> {
    (
        any::<u8>(),
        name(31),
        any::<[u64; 2]>(),
        any::<[u32; 2]>(),
        vec(arb_table_prop(), 0..4),
    )
        .prop_map(|(table_id, name, m, c, properties)| TableFeatures {
            table_id,
            name,
            metadata_match: m[0],
            metadata_write: m[1],
            config: c[0],
            max_entries: c[1],
            properties,
        })
        .boxed()
}

fn arb_mp_experimenter() -> BoxedStrategy<MultipartExperimenter> {
    (any::<u32>(), any::<u32>(), bytes(20))
        .prop_map(|(experimenter, exp_type, data)| MultipartExperimenter {
            experimenter,
            exp_type,
            data,
        })
        .boxed()
}

fn arb_mp_request() -> BoxedStrategy<MultipartRequest> {
    use MultipartRequestBody as B;
    let body = prop_oneof![
        Just(B::Desc),
        arb_flow_stats_request().prop_map(B::Flow),
        arb_flow_stats_request().prop_map(B::Aggregate),
        Just(B::Table),
        any::<u32>().prop_map(|port_no| B::PortStats { port_no }),
        (any::<u32>(), any::<u32>()).prop_map(|(port_no, queue_id)| B::Queue { port_no, queue_id }),
        any::<u32>().prop_map(|group_id| B::Group { group_id }),
        Just(B::GroupDesc),
        Just(B::GroupFeatures),
        any::<u32>().prop_map(|meter_id| B::Meter { meter_id }),
        any::<u32>().prop_map(|meter_id| B::MeterConfig { meter_id }),
        Just(B::MeterFeatures),
        vec(arb_table_features(), 0..3).prop_map(B::TableFeatures),
        Just(B::PortDesc),
        arb_mp_experimenter().prop_map(B::Experimenter),
    ]
    .boxed();
    (0u16..2, body)
        .prop_map(|(flags, body)| MultipartRequest { flags, body })
        .boxed()
}

fn arb_flow_stats() -> BoxedStrategy<FlowStats> {
    (
        any::<u8>(),
        any::<[u32; 2]>(),
        any::<[u16; 4]>(),
        any::<[u64; 3]>(),
        arb_match(),
        arb_instructions(),
    )
        .prop_map(|(table_id, d, s, c, match_, instructions)| FlowStats {
            table_id,
            duration_sec: d[0],
            duration_nsec: d[1],
            priority: s[0],
            idle_timeout: s[1],
            hard_timeout: s[2],
            flags: s[3],
            cookie: c[0],
            packet_count: c[1],
            byte_count: c[2],
            match_,
            instructions,
        })
        .boxed()
}

fn arb_mp_reply() -> BoxedStrategy<MultipartReply> {
    use MultipartReplyBody as B;
    let body = prop_oneof![
        (name(255), name(255), name(255), name(31), name(255)).prop_map(|(a, b, c, d, e)| {
            B::Desc(Desc {
                mfr_desc: a,
                hw_desc: b,
                sw_desc: c,
                serial_num: d,
                dp_desc: e,
            })
        }),
        vec(arb_flow_stats(), 0..3).prop_map(B::Flow),
        (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(p, b, f)| B::Aggregate(
            AggregateStats {
                packet_count: p,
                byte_count: b,
                flow_count: f
            }
        )),
        vec(
            (any::<u8>(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(|(t, a, l, m)| {
                TableStats {
                    table_id: t,
                    active_count: a,
                    lookup_count: l,
                    matched_count: m,
                }
            }),
            0..3
        )
        .prop_map(B::Table),
        vec(
            (any::<u32>(), any::<[u64; 12]>(), any::<[u32; 2]>()).prop_map(|(p, c, d)| {
                PortStats {
                    port_no: p,
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
                    duration_sec: d[0],
                    duration_nsec: d[1],
                }
            }),
            0..3
        )
        .prop_map(B::PortStats),
        vec(
            (any::<[u32; 4]>(), any::<[u64; 3]>()).prop_map(|(a, b)| QueueStats {
                port_no: a[0],
                queue_id: a[1],
                tx_bytes: b[0],
                tx_packets: b[1],
                tx_errors: b[2],
                duration_sec: a[2],
                duration_nsec: a[3],
            }),
            0..3
        )
        .prop_map(B::Queue),
        vec(
            (
                any::<[u32; 4]>(),
                any::<[u64; 2]>(),
                vec(any::<(u64, u64)>(), 0..3)
            )
                .prop_map(|(a, b, bucket_stats)| GroupStats {
                    group_id: a[0],
                    ref_count: a[1],
                    packet_count: b[0],
                    byte_count: b[1],
                    duration_sec: a[2],
                    duration_nsec: a[3],
                    bucket_stats,
                }),
            0..3
        )
        .prop_map(B::Group),
        vec(
            (arb_group_type(), any::<u32>(), vec(arb_bucket(), 0..3)).prop_map(
                |(group_type, group_id, buckets)| GroupDesc {
                    group_type,
                    group_id,
                    buckets
                }
            ),
            0..3
        )
        .prop_map(B::GroupDesc),
        any::<[u32; 10]>().prop_map(|a| B::GroupFeatures(GroupFeatures {
            types: a[0],
            capabilities: a[1],
            max_groups: [a[2], a[3], a[4], a[5]],
            actions: [a[6], a[7], a[8], a[9]],
        })),
        vec(
            (
                any::<[u32; 4]>(),
                any::<[u64; 2]>(),
                vec(any::<(u64, u64)>(), 0..3)
            )
                .prop_map(|(a, b, band_stats)| MeterStats {
                    meter_id: a[0],
                    flow_count: a[1],
                    packet_in_count: b[0],
                    byte_in_count: b[1],
                    duration_sec: a[2],
                    duration_nsec: a[3],
                    band_stats,
                }),
            0..3
        )
        .prop_map(B::Meter),
        vec(
            (arb_meter_flags(), any::<u32>(), vec(arb_band(), 0..3)).prop_map(
                |(flags, meter_id, bands)| MeterConfig {
                    flags,
                    meter_id,
                    bands
                }
            ),
            0..3
        )
        .prop_map(B::MeterConfig),
        (any::<[u32; 3]>(), any::<[u8; 2]>()).prop_map(|(a, b)| B::MeterFeatures(MeterFeatures {
            max_meter: a[0],
            band_types: a[1],
            capabilities: a[2],
            max_bands: b[0],
            max_color: b[1],
        })),
        vec(arb_table_features(), 0..3).prop_map(B::TableFeatures),
        vec(arb_port(), 0..3).prop_map(B::PortDesc),
        arb_mp_experimenter().prop_map(B::Experimenter),
    ]
    .boxed();
    (0u16..2, body)
        .prop_map(|(flags, body)| MultipartReply { flags, body })
        .boxed()
}

fn arb_error() -> BoxedStrategy<ErrorMsg> {
    let err = prop_oneof![
        (0u16..14, 0u16..16).prop_map(|(t, c)| OfpError::from_type_code(t, c)),
        (any::<u16>(), any::<u32>()).prop_map(|(exp_type, experimenter)| {
            OfpError::Experimenter {
                exp_type,
                experimenter,
            }
        }),
        (14u16..0xffff, any::<u16>())
            .prop_map(|(err_type, code)| OfpError::Other { err_type, code }),
    ]
    .boxed();
    (err, bytes(64))
        .prop_map(|(error, data)| ErrorMsg { error, data })
        .boxed()
}

fn arb_hello() -> BoxedStrategy<Hello> {
    vec(
        prop_oneof![
            vec(any::<u32>(), 0..3).prop_map(HelloElement::VersionBitmap),
            (2u16..=u16::MAX, bytes(12))
                .prop_map(|(elem_type, data)| HelloElement::Unknown { elem_type, data }),
        ],
        0..3,
    )
    .prop_map(|elements| Hello { elements })
    .boxed()
}

fn arb_packet_in2() -> BoxedStrategy<PacketIn2> {
    (
        bytes(80),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(arb_match()),
        proptest::option::of(bytes(20)),
        proptest::option::of(bytes(40)),
        vec((9u16..0xffff, bytes(10)), 0..2),
    )
        .prop_map(
            |(
                packet,
                full_len,
                buffer_id,
                table_id,
                cookie,
                reason,
                metadata,
                userdata,
                continuation,
                unknown,
            )| {
                PacketIn2 {
                    packet,
                    full_len,
                    buffer_id,
                    table_id,
                    cookie,
                    reason,
                    metadata,
                    userdata,
                    continuation,
                    unknown,
                }
            },
        )
        .boxed()
}

fn arb_flow_mod() -> BoxedStrategy<FlowMod> {
    let cmd = prop_oneof![
        Just(FlowModCommand::Add),
        Just(FlowModCommand::Modify),
        Just(FlowModCommand::ModifyStrict),
        Just(FlowModCommand::Delete),
        Just(FlowModCommand::DeleteStrict),
    ]
    .boxed();
    (
        any::<[u64; 2]>(),
        any::<u8>(),
        cmd,
        any::<[u16; 4]>(),
        any::<[u32; 3]>(),
        arb_match(),
        arb_instructions(),
    )
        .prop_map(
            |(c, table_id, command, s, p, match_, instructions)| FlowMod {
                cookie: c[0],
                cookie_mask: c[1],
                table_id,
                command,
                idle_timeout: s[0],
                hard_timeout: s[1],
                priority: s[2],
                buffer_id: p[0],
                out_port: p[1],
                out_group: p[2],
                flags: s[3],
                match_,
                instructions,
            },
        )
        .boxed()
}

fn arb_group_mod() -> BoxedStrategy<GroupMod> {
    let cmd = prop_oneof![
        Just(GroupModCommand::Add),
        Just(GroupModCommand::Modify),
        Just(GroupModCommand::Delete),
    ]
    .boxed();
    (cmd, arb_group_type(), any::<u32>(), vec(arb_bucket(), 0..3))
        .prop_map(|(command, group_type, group_id, buckets)| GroupMod {
            command,
            group_type,
            group_id,
            buckets,
        })
        .boxed()
}

fn arb_meter_mod() -> BoxedStrategy<MeterMod> {
    let cmd = prop_oneof![
        Just(MeterModCommand::Add),
        Just(MeterModCommand::Modify),
        Just(MeterModCommand::Delete),
    ]
    .boxed();
    (cmd, arb_meter_flags(), any::<u32>(), vec(arb_band(), 0..3))
        .prop_map(|(command, flags, meter_id, bands)| MeterMod {
            command,
            flags,
            meter_id,
            bands,
        })
        .boxed()
}

/// Messages that may be put into a bundle.
fn arb_bundlable() -> BoxedStrategy<Message> {
    prop_oneof![
        arb_flow_mod().prop_map(Message::FlowMod),
        arb_group_mod().prop_map(Message::GroupMod),
        arb_meter_mod().prop_map(Message::MeterMod),
        (any::<u8>(), any::<u32>())
            .prop_map(|(table_id, config)| Message::TableMod(TableMod { table_id, config })),
        (any::<u32>(), any::<u32>(), arb_actions(), bytes(64)).prop_map(
            |(buffer_id, in_port, actions, data)| Message::PacketOut(PacketOut {
                buffer_id,
                in_port,
                actions,
                data
            })
        ),
        (any::<u32>(), any::<[u8; 6]>(), any::<[u32; 3]>()).prop_map(|(port_no, hw_addr, v)| {
            Message::PortMod(PortMod {
                port_no,
                hw_addr,
                config: v[0],
                mask: v[1],
                advertise: v[2],
            })
        }),
    ]
    .boxed()
}

fn arb_bundle_ctrl_type() -> BoxedStrategy<BundleCtrlType> {
    (0u16..8)
        .prop_map(|t| BundleCtrlType::from_u16(t).unwrap())
        .boxed()
}

/// Every message type.
pub fn arb_message() -> BoxedStrategy<Message> {
    let basic = prop_oneof![
        arb_hello().prop_map(Message::Hello),
        arb_error().prop_map(Message::Error),
        bytes(32).prop_map(Message::EchoRequest),
        bytes(32).prop_map(Message::EchoReply),
        Just(Message::FeaturesRequest),
        (
            any::<u64>(),
            any::<u32>(),
            any::<[u8; 2]>(),
            any::<[u32; 2]>()
        )
            .prop_map(|(datapath_id, n_buffers, b, c)| Message::FeaturesReply(
                FeaturesReply {
                    datapath_id,
                    n_buffers,
                    n_tables: b[0],
                    auxiliary_id: b[1],
                    capabilities: c[0],
                    reserved: c[1],
                }
            )),
        Just(Message::GetConfigRequest),
        any::<[u16; 2]>().prop_map(|a| Message::GetConfigReply(SwitchConfig {
            flags: a[0],
            miss_send_len: a[1]
        })),
        any::<[u16; 2]>().prop_map(|a| Message::SetConfig(SwitchConfig {
            flags: a[0],
            miss_send_len: a[1]
        })),
        Just(Message::BarrierRequest),
        Just(Message::BarrierReply),
        Just(Message::GetAsyncRequest),
        any::<u32>().prop_map(|port| Message::QueueGetConfigRequest { port }),
        (any::<u32>(), any::<u64>()).prop_map(|(role, generation_id)| Message::RoleRequest(Role {
            role,
            generation_id
        })),
        (any::<u32>(), any::<u64>()).prop_map(|(role, generation_id)| Message::RoleReply(Role {
            role,
            generation_id
        })),
        any::<[u32; 6]>().prop_map(|a| Message::GetAsyncReply(AsyncConfig {
            packet_in_mask: [a[0], a[1]],
            port_status_mask: [a[2], a[3]],
            flow_removed_mask: [a[4], a[5]],
        })),
        any::<[u32; 6]>().prop_map(|a| Message::SetAsync(AsyncConfig {
            packet_in_mask: [a[0], a[1]],
            port_status_mask: [a[2], a[3]],
            flow_removed_mask: [a[4], a[5]],
        })),
    ]
    .boxed();
    let queue_prop = prop_oneof![
        any::<u16>().prop_map(QueueProp::MinRate),
        any::<u16>().prop_map(QueueProp::MaxRate),
        (any::<u32>(), bytes8(2))
            .prop_map(|(experimenter, data)| QueueProp::Experimenter { experimenter, data }),
        (3u16..0xffff, bytes8(2))
            .prop_map(|(prop_type, data)| QueueProp::Unknown { prop_type, data }),
    ]
    .boxed();
    let queue = (any::<u32>(), any::<u32>(), vec(queue_prop, 0..3)).prop_map(
        |(queue_id, port, properties)| PacketQueue {
            queue_id,
            port,
            properties,
        },
    );
    let rich = prop_oneof![
        (
            any::<u32>(),
            any::<u16>(),
            any::<[u8; 2]>(),
            any::<u64>(),
            arb_match(),
            bytes(80)
        )
            .prop_map(|(buffer_id, total_len, b, cookie, match_, data)| {
                Message::PacketIn(PacketIn {
                    buffer_id,
                    total_len,
                    reason: b[0],
                    table_id: b[1],
                    cookie,
                    match_,
                    data,
                })
            }),
        (
            any::<[u64; 3]>(),
            any::<[u16; 3]>(),
            any::<[u8; 2]>(),
            any::<[u32; 2]>(),
            arb_match()
        )
            .prop_map(|(c, s, b, d, match_)| Message::FlowRemoved(FlowRemoved {
                cookie: c[0],
                priority: s[0],
                reason: b[0],
                table_id: b[1],
                duration_sec: d[0],
                duration_nsec: d[1],
                idle_timeout: s[1],
                hard_timeout: s[2],
                packet_count: c[1],
                byte_count: c[2],
                match_,
            })),
        (any::<u8>(), arb_port())
            .prop_map(|(reason, desc)| Message::PortStatus(PortStatus { reason, desc })),
        arb_bundlable(),
        arb_mp_request().prop_map(Message::MultipartRequest),
        arb_mp_reply().prop_map(Message::MultipartReply),
        (any::<u32>(), vec(queue, 0..3)).prop_map(|(port, queues)| Message::QueueGetConfigReply(
            QueueGetConfigReply { port, queues }
        )),
    ]
    .boxed();
    let nx = prop_oneof![
        any::<u32>().prop_map(Message::NxSetPacketInFormat),
        any::<u16>().prop_map(Message::NxSetControllerId),
        arb_packet_in2().prop_map(Message::NxPacketIn2),
        arb_packet_in2().prop_map(Message::NxResume),
        (any::<u32>(), arb_bundle_ctrl_type(), 0u16..4, bytes8(2)).prop_map(
            |(bundle_id, ctrl_type, flags, properties)| Message::BundleControl(BundleControl {
                bundle_id,
                ctrl_type,
                flags,
                properties
            })
        ),
        (
            any::<u32>(),
            0u16..4,
            arb_bundlable(),
            proptest::option::of(bytes8(2))
        )
            .prop_map(|(bundle_id, flags, m, props)| {
                // Properties, when present, must be non-empty.
                let properties = match props {
                    Some(mut p) => {
                        p.extend_from_slice(&[0xff, 0xff, 0, 8, 0, 0, 0, 0]);
                        p
                    }
                    None => Vec::new(),
                };
                Message::BundleAdd(BundleAdd {
                    bundle_id,
                    flags,
                    message: Box::new(m),
                    properties,
                })
            }),
    ]
    .boxed();
    prop_oneof![basic, rich, nx].boxed()
}
