//! Proptest strategies for [`Action`] and [`Instruction`] that generate only
//! values whose encoding decodes back to the same value (the codec's
//! normal forms): e.g. notes padded like OVS pads them, writable
//! destinations only.

use super::*;
use crate::instruction::Instruction;
use proptest::collection::vec;
use proptest::prelude::*;

/// Fields usable in NX subfields (all with a 32-bit NXM/OXM header).
fn nx_field() -> impl Strategy<Value = FieldId> {
    let fields: Vec<FieldId> = FieldId::all()
        .filter(|f| f.info().experimenter.is_none())
        .collect();
    proptest::sample::select(fields)
}

/// A valid subfield of at most `max_bits` bits.
pub fn subfield(max_bits: u16) -> impl Strategy<Value = Subfield> {
    nx_field().prop_flat_map(move |field| {
        let w = Subfield::width(field);
        (0..w).prop_flat_map(move |ofs| {
            let max = (w - ofs).min(max_bits).max(1);
            (1..=max).prop_map(move |n_bits| Subfield { field, ofs, n_bits })
        })
    })
}

fn bits(n: u16) -> u128 {
    if n >= 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    }
}

/// An unmasked or (experimenter-field) masked set_field.
pub fn set_field() -> impl Strategy<Value = MatchField> {
    let all: Vec<FieldId> = FieldId::all().filter(|&f| is_writable(f)).collect();
    (proptest::sample::select(all), any::<u128>(), any::<u128>()).prop_map(|(f, v, m)| {
        let full = f.full_mask();
        if f.info().maskable && m & full != full {
            MatchField::masked(f, v & m & full, m & full)
        } else {
            MatchField::exact(f, v & full)
        }
    })
}

fn learn_spec() -> impl Strategy<Value = LearnSpec> {
    (subfield(128), any::<u128>(), 0u8..5, any::<bool>()).prop_flat_map(|(dst, v, kind, flip)| {
        let n = dst.n_bits;
        subfield(n).prop_filter_map("same width", move |src| {
            let src = if src.n_bits == n { src } else { dst };
            let _ = flip;
            Some(match kind {
                0 => LearnSpec {
                    n_bits: n,
                    src: LearnSrc::Field(src),
                    dst: LearnDst::Match(dst),
                },
                1 => LearnSpec {
                    n_bits: n,
                    src: LearnSrc::Imm(v & bits(n)),
                    dst: LearnDst::Match(dst),
                },
                2 => LearnSpec {
                    n_bits: n,
                    src: LearnSrc::Field(src),
                    dst: LearnDst::Load(dst),
                },
                3 => LearnSpec {
                    n_bits: n,
                    src: LearnSrc::Imm(v & bits(n)),
                    dst: LearnDst::Load(dst),
                },
                _ => LearnSpec {
                    n_bits: n,
                    src: LearnSrc::Field(dst),
                    dst: LearnDst::Output,
                },
            })
        })
    })
}

fn learn() -> impl Strategy<Value = Learn> {
    (
        (
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u64>(),
            0u16..4,
            0u8..255,
        ),
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            proptest::option::of(subfield(1)),
        ),
        vec(learn_spec(), 0..4),
    )
        .prop_map(
            |((idle, hard, prio, cookie, flags, table), (fi, fh, limit, rd), specs)| Learn {
                idle_timeout: idle,
                hard_timeout: hard,
                priority: prio,
                cookie,
                flags,
                table_id: table,
                fin_idle_timeout: fi,
                fin_hard_timeout: fh,
                limit,
                result_dst: rd,
                specs,
            },
        )
}

fn nat() -> impl Strategy<Value = Nat> {
    (
        0u16..3,
        0u16..8,
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u128>()),
        proptest::option::of(any::<u128>()),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u16>()),
    )
        .prop_map(|(dir, fl, a, b, c, d, e, f)| Nat {
            flags: dir | (fl << 2),
            ipv4_min: a,
            ipv4_max: b,
            ipv6_min: c,
            ipv6_max: d,
            proto_min: e,
            proto_max: f,
        })
}

/// Actions without nesting.
pub fn leaf_action() -> BoxedStrategy<Action> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(port, max_len)| Action::Output { port, max_len }),
        Just(Action::CopyTtlOut),
        Just(Action::CopyTtlIn),
        any::<u8>().prop_map(Action::SetMplsTtl),
        Just(Action::DecMplsTtl),
        any::<u16>().prop_map(Action::PushVlan),
        Just(Action::PopVlan),
        any::<u16>().prop_map(Action::PushMpls),
        any::<u16>().prop_map(Action::PopMpls),
        any::<u32>().prop_map(Action::SetQueue),
        any::<u32>().prop_map(Action::Group),
        any::<u8>().prop_map(Action::SetNwTtl),
        Just(Action::DecNwTtl),
        set_field().prop_map(Action::SetField),
        any::<u16>().prop_map(Action::PushPbb),
        Just(Action::PopPbb),
        (
            any::<u16>(),
            proptest::option::of(any::<u8>()),
            any::<bool>()
        )
            .prop_map(|(in_port, table, ct)| Action::Resubmit {
                in_port,
                table,
                ct: ct && table.is_some()
            }),
        (any::<u64>(), any::<bool>()).prop_map(|(t, wide)| Action::SetTunnel {
            tun_id: if wide { t } else { t & 0xffff_ffff },
            wide
        }),
        subfield(64).prop_flat_map(|src| subfield(src.n_bits).prop_filter_map(
            "same width",
            move |dst| (dst.n_bits == src.n_bits && is_writable(dst.field))
                .then_some(Action::RegMove { src, dst })
        )),
        (
            subfield(64).prop_filter("writable", |d| is_writable(d.field)),
            any::<u64>()
        )
            .prop_map(|(dst, v)| Action::RegLoad {
                dst,
                value: (v as u128 & bits(dst.n_bits)) as u64
            }),
        (0usize..4, any::<[u8; 30]>()).prop_map(|(k, b)| Action::Note(b[..6 + 8 * k].to_vec())),
        (subfield(32), any::<u16>()).prop_map(|(src, max_len)| Action::OutputReg { src, max_len }),
        learn().prop_map(|l| Action::Learn(Box::new(l))),
        Just(Action::Exit),
        vec(any::<u16>(), 0..6).prop_map(Action::DecTtlCntIds),
        (any::<u16>(), any::<u16>()).prop_map(|(idle_timeout, hard_timeout)| Action::FinTimeout {
            idle_timeout,
            hard_timeout
        }),
        (
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
            vec(any::<u8>(), 0..12),
            any::<bool>(),
            any::<u32>()
        )
            .prop_map(
                |(max_len, controller_id, reason, userdata, pause, meter_id)| {
                    Action::Controller(Box::new(Controller {
                        max_len,
                        controller_id,
                        reason,
                        userdata,
                        pause,
                        meter_id,
                    }))
                }
            ),
        (any::<u64>(), any::<u64>())
            .prop_map(|(metadata, mask)| Action::WriteMetadata { metadata, mask }),
        (any::<u32>(), 2u8..64).prop_flat_map(|(id, n)| (0..n).prop_map(move |clause| {
            Action::Conjunction {
                id,
                clause,
                n_clauses: n,
            }
        })),
        nat().prop_map(Action::Nat),
        Just(Action::CtClear),
        (
            0u16..7,
            any::<u16>(),
            0u16..4,
            any::<u16>(),
            any::<u32>(),
            subfield(32)
        )
            .prop_map(
                |(fields, basis, algorithm, max_link, arg, dst)| Action::Multipath(Multipath {
                    fields,
                    basis,
                    algorithm,
                    max_link,
                    arg,
                    dst
                })
            ),
        (
            0u16..2,
            0u16..7,
            any::<u16>(),
            proptest::option::of(subfield(32)),
            vec(any::<u16>(), 0..5)
        )
            .prop_map(
                |(algorithm, fields, basis, dst, members)| Action::Bundle(Box::new(Bundle {
                    algorithm,
                    fields,
                    basis,
                    dst,
                    members
                }))
            ),
        (any::<u16>(), any::<u32>())
            .prop_map(|(port, max_len)| Action::OutputTrunc { port, max_len }),
        (
            1u16..,
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(0u16..0xffff),
            0u8..3
        )
            .prop_map(
                |(
                    probability,
                    collector_set_id,
                    obs_domain_id,
                    obs_point_id,
                    sampling_port,
                    direction,
                )| {
                    Action::Sample(Sample {
                        probability,
                        collector_set_id,
                        obs_domain_id,
                        obs_point_id,
                        sampling_port,
                        direction,
                    })
                }
            ),
    ]
    .boxed()
}

/// Any action, with `ct`/`clone` nesting up to depth 2.
pub fn action() -> BoxedStrategy<Action> {
    leaf_action()
        .prop_recursive(2, 16, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(Action::Clone),
                (
                    0u16..4,
                    prop_oneof![
                        any::<u16>().prop_map(CtZone::Imm),
                        subfield(16)
                            .prop_filter("16 bits", |s| s.n_bits == 16)
                            .prop_map(CtZone::Field)
                    ],
                    proptest::option::of(0u8..255),
                    any::<u16>(),
                    vec(inner, 0..3)
                )
                    .prop_map(|(f, zone, recirc_table, alg, actions)| {
                        let flags = if f & 2 != 0 { 3 } else { f };
                        Action::Ct(Box::new(Ct {
                            flags,
                            zone,
                            recirc_table,
                            alg,
                            actions,
                        }))
                    }),
            ]
        })
        .boxed()
}

/// An action list.
pub fn actions() -> impl Strategy<Value = Vec<Action>> {
    vec(action(), 0..5)
}

/// One instruction.
pub fn instruction() -> impl Strategy<Value = Instruction> {
    prop_oneof![
        (0u8..255).prop_map(Instruction::GotoTable),
        (any::<u64>(), any::<u64>())
            .prop_map(|(metadata, mask)| Instruction::WriteMetadata { metadata, mask }),
        actions().prop_map(Instruction::WriteActions),
        actions().prop_map(Instruction::ApplyActions),
        Just(Instruction::ClearActions),
        any::<u32>().prop_map(Instruction::Meter),
        (any::<u32>(), 0usize..3, any::<[u8; 20]>()).prop_map(|(experimenter, k, b)| {
            Instruction::Experimenter {
                experimenter,
                data: b[..8 * k].to_vec(),
            }
        }),
    ]
}

/// An instruction list with each type at most once, in OVS's order.
pub fn instructions() -> impl Strategy<Value = Vec<Instruction>> {
    vec(instruction(), 0..5).prop_map(|v| {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for i in v {
            let d = std::mem::discriminant(&i);
            if !seen.contains(&d) {
                seen.push(d);
                out.push(i);
            }
        }
        out
    })
}
