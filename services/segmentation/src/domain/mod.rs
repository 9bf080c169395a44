//! Segmentation's domain: pure logic, no IO.

pub mod groups;
pub mod rfm;
