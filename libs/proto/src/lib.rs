//! Generated protobuf messages and tonic clients and servers for every Boomerang API.
//!
//! This is the only crate that reads `.proto` files (compiled by protox at build time, so no system `protoc` is
//! needed). It re-exports the tonic and prost versions the generated code was built against.

pub use prost;
pub use prost_types;
pub use tonic;

/// Packages under `boomerang.*`, one module per package.
#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod boomerang {
    /// `boomerang.events.v1`: the event envelope every service publishes.
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("boomerang.events.v1");
        }
    }
    /// `boomerang.ingestion.v1`: customers, orders, spend, engagement and consent.
    pub mod ingestion {
        pub mod v1 {
            tonic::include_proto!("boomerang.ingestion.v1");
        }
    }
    /// `boomerang.segmentation.v1`: segments, membership, RFM, transitions.
    pub mod segmentation {
        pub mod v1 {
            tonic::include_proto!("boomerang.segmentation.v1");
        }
    }
}

pub use boomerang::events::v1 as events;
pub use boomerang::ingestion::v1 as ingestion;
pub use boomerang::segmentation::v1 as segmentation;

/// Encoded `FileDescriptorSet` of every Boomerang proto and its imports, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
