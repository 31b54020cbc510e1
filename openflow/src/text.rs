//! `ovs-ofctl` flow syntax: parse and print.
//!
//! STUB: filled in by the text-form work.
