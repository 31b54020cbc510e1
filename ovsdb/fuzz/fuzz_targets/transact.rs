#![no_main]
//! Bytes drive a generator of structured transactions (insert/update/mutate/
//! delete/wait with wrong types, dangling refs, named-uuids) against the
//! vswitch schema: no panic, failures are error objects and change nothing,
//! the database stays consistent after every transaction.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = plexus_ovsdb::fuzz::transact_ops(data);
});
