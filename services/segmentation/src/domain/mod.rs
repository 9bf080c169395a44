//! Segmentation's domain: pure logic, no IO.

pub mod bgnbd;
pub mod groups;
pub mod lifecycle;
pub mod rfm;
pub mod rupture;
