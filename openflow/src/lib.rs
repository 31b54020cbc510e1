//! `plexus-openflow`: a sans-IO OpenFlow 1.3 (wire version 0x04) codec with the
//! Nicira/NXM extensions that OVS controllers rely on, the `ovs-ofctl` text
//! form, and a tokio connection layer used by both controller and switch.
//!
//! Layout:
//! - [`wire`]: bounds-checked reader, header, framing.
//! - [`error`]: OFPT_ERROR types/codes and [`DecodeError`] (maps every bad
//!   input to the exact OFPT_ERROR a switch sends back).
//! - [`oxm`]: match fields (OXM + NXM), `ofp_match`, prerequisites.
//! - [`action`], [`instruction`]: OpenFlow and Nicira actions, instructions.
//! - [`message`]: every OpenFlow 1.3 message, multipart bodies, NX messages.
//! - [`text`]: `ovs-ofctl` flow syntax: parse and print.
//! - [`conn`]: tokio connection layer (hello, echo, xid correlation, barrier).

pub mod action;
pub mod conn;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod instruction;
pub mod message;
pub mod oxm;
pub mod text;
pub mod wire;

pub use action::Action;
pub use error::{DecodeError, OfpError};
pub use instruction::Instruction;
pub use message::Message;
pub use oxm::{FieldId, Match, MatchField};
