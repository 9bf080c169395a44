//! Pure scoring logic: no I/O. Definitions in docs/segmentation.md.

pub mod bgnbd;
pub mod evaluate;
pub mod groups;
pub mod lifecycle;
pub mod rfm;
pub mod rupture;
pub mod segments;
pub mod settings;
