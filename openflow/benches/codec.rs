//! Codec benchmarks: decode and encode of a typical FLOW_MOD
//! (`ip,nw_dst=10.0.0.0/24,tcp,tp_dst=80 actions=output:1`) and of a
//! PACKET_IN carrying a 64-byte frame.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use plexus_openflow::message::{FlowMod, Message, OFP_NO_BUFFER, PacketIn};
use plexus_openflow::{Action, FieldId, Instruction, Match};

fn flow_mod() -> Message {
    let mut m = Match::new();
    m.set(FieldId::EthType, 0x0800);
    m.set_masked(FieldId::Ipv4Dst, 0x0a00_0000, 0xffff_ff00);
    m.set(FieldId::IpProto, 6);
    m.set(FieldId::TcpDst, 80);
    let mut fm = FlowMod::add(
        m,
        vec![Instruction::ApplyActions(vec![Action::Output {
            port: 1,
            max_len: 0,
        }])],
    );
    fm.priority = 100;
    Message::FlowMod(fm)
}

fn packet_in() -> Message {
    let mut m = Match::new();
    m.set(FieldId::InPort, 3);
    Message::PacketIn(PacketIn {
        buffer_id: OFP_NO_BUFFER,
        total_len: 64,
        reason: 1,
        table_id: 0,
        cookie: 0x1234,
        match_: m,
        data: (0..64u8).collect(),
    })
}

fn bench(c: &mut Criterion) {
    for (name, msg) in [("flow_mod", flow_mod()), ("packet_in", packet_in())] {
        let bytes = msg.to_bytes(7);
        c.bench_function(&format!("decode_{name}"), |b| {
            b.iter(|| Message::decode(black_box(&bytes)).unwrap())
        });
        let mut out = Vec::with_capacity(256);
        c.bench_function(&format!("encode_{name}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&msg).encode(7, &mut out);
                out.len()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
